"""Records passed between decoding, validation and storage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensornet.errors import PayloadError

if TYPE_CHECKING:
    from sensornet.catalogue import SensorType


@dataclass(frozen=True, slots=True)
class ItemReject:
    """One reading of a multi-reading message that could not be decoded."""

    index: int
    sensor_id: str | None
    error: PayloadError
    seq: int | None = None  # the refused reading's, when it carried one


@dataclass(slots=True)
class Decoded:
    readings: list[RawReading]
    rejects: list[ItemReject]


@dataclass(slots=True)
class RawReading:
    """One device reading before validation. ``sensor_id`` is set by packs and by formats
    that name their device; ``scheme`` says how it names it: ``""`` a registry id, else a
    key of that scheme (``sensornet.formats.ID_SCHEMES``: a DevEUI, a chip id, ...)."""

    values: dict[str, Any]
    ts_ns: int | None = None
    seq: int | None = None
    sensor_id: str | None = None
    scheme: str = ""
    # A format whose values depend on the device's type (a LoRaWAN payload decoded by the
    # type's codec and key map) leaves them to this, called once the device is resolved.
    complete: Callable[[SensorType], Completion] | None = None


@dataclass(slots=True)
class Completion:
    """What a reading's ``complete`` found: its ``values``; ``health`` of the device, kept
    in the ``device_health`` measurement whatever becomes of the reading (radio metadata,
    battery); ``error``, when the reading is refused (its reason and detail); ``reading``
    false for a record of health only (nothing to store or account as a reading)."""

    values: dict[str, Any]
    health: dict[str, float | int | bool] = field(default_factory=dict)
    error: PayloadError | None = None
    reading: bool = True
