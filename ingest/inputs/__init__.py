"""Ways in: one module per input, one small interface (docs/decisions.md, "Inputs").

An input is an async context manager, built by its module's ``build(context)``. While
entered it hands ``InboundMessage`` lists to ``context.deliver`` (a plain callback, so the
MQTT input's one-list-per-socket-read path costs no task or queue per message). The
ingester batches what all inputs delivered, makes each batch durable, then calls every
input's ``ack(batch, outcome)`` in batch order: each input acknowledges only the messages
it delivered itself (it knows them by ``InboundMessage.connection``, an object it owns),
and may read ``outcome`` for what became of them (the HTTP input answers with it). Under
backpressure the ingester calls ``pause()``, and ``resume()`` once the pending bytes fell.
An input whose senders wait for the answer calls ``context.hurry()`` after delivering: the
batch is then cut at once (while fewer than ``ingest_writes_in_flight`` writes are under
way; more requests gather meanwhile) instead of waiting for the timer.

The pipeline and the durable writer never learn which input a message came from: what a
message is, is said by its topic (the native layout, ``sensornet.topics``) and its
``fmt`` (``""`` native JSON, else a decoder registered in ``sensornet.formats``).

Adding an input: a module here with ``build(context) -> Input``, its name in ``INPUTS``,
a test. The ingester runs the inputs named by ``SENSORNET_INGEST_INPUTS``.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self

from sensornet.errors import ConfigError
from sensornet.mqtt_wire import InboundMessage
from sensornet.settings import Settings

if TYPE_CHECKING:
    from ingest.metrics import IngestStats
    from ingest.pipeline import Reject
    from sensornet.registry.store import DeviceCache

Deliver = Callable[[list[InboundMessage], int], None]  # messages, their payload bytes

# name -> module; each module has ``build(context: InputContext) -> Input``
INPUTS: dict[str, str] = {
    "mqtt": "ingest.inputs.mqtt",
    "amqp": "ingest.inputs.amqp",
    "http": "ingest.inputs.http",
    "lorawan": "ingest.inputs.lorawan",  # a network server's MQTT integration
    "sensor_community": "ingest.inputs.sensor_community",
}


class Input(Protocol):
    """What the ingester needs of a way in."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def ready(self) -> None:
        """Returns once the input receives (MQTT: subscribed; HTTP: listening)."""

    def pause(self) -> None:
        """Deliver nothing more until ``resume`` (the ingester's memory bound)."""

    def resume(self) -> None: ...

    def ack(self, batch: Sequence[InboundMessage], outcome: BatchOutcome) -> None:
        """``batch`` is durable: acknowledge the messages of it this input delivered
        (only those: a batch mixes inputs). Called in batch order, never concurrently."""


@dataclass
class InputContext:
    """What an input may use: settings, the ingester's callback, the registry cache
    (credentials, lookups) and the stats (its own counters)."""

    settings: Settings
    deliver: Deliver
    devices: DeviceCache
    stats: IngestStats
    # Cut a batch now instead of at the next full batch or timer: for inputs whose
    # senders wait for the answer (HTTP), where few messages carry many readings.
    hurry: Callable[[], None] = lambda: None


@dataclass
class BatchOutcome:
    """What became of a durable batch's messages, for inputs that answer per message:
    the pipeline's refusals (each already a dead letter), matched to a message by its
    payload object (the pipeline keeps it, never a copy). The index is built only when an
    input asks, so the MQTT input's acks cost nothing more."""

    rejects: Sequence[Reject] = ()
    _by_payload: dict[int, list[Reject]] | None = field(default=None, repr=False)

    def refused(self, message: InboundMessage) -> list[Reject]:
        if self._by_payload is None:
            index: dict[int, list[Reject]] = defaultdict(list)
            for reject in self.rejects:
                index[id(reject.payload)].append(reject)
            self._by_payload = dict(index)
        return self._by_payload.get(id(message.payload), [])


def build_inputs(names: Sequence[str], context: InputContext) -> list[Input]:
    """The inputs named, in order; an unknown name is a configuration error."""
    inputs = []
    for name in names:
        module_name = INPUTS.get(name)
        if module_name is None:
            raise ConfigError(
                f"unknown input {name!r} in SENSORNET_INGEST_INPUTS; known: {', '.join(INPUTS)}"
            )
        module = importlib.import_module(module_name)
        inputs.append(module.build(context))
    return inputs
