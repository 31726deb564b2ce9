"""Topic layout, in one place. The device id is a topic level and equals the device's
MQTT username, so one ACL pattern (``<prefix>/%u/#``) confines a device to its topics.

    <prefix>/<device_id>/readings   readings of one sensor (QoS 1)
    <prefix>/<device_id>/status     retained status, also the Last Will
    <prefix>/<gateway_id>/pack      a gateway's pack carrying many sensors' readings
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

TopicKind = Literal["readings", "status", "pack"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("readings", "status", "pack")


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: str
    kind: TopicKind


def device_topic(prefix: str, device_id: str, kind: TopicKind) -> str:
    return f"{prefix}/{device_id}/{kind}"


def ingest_filters(prefix: str, share_group: str | None) -> list[str]:
    """Topic filters the ingester subscribes to; shared when a group is given."""
    filters = [f"{prefix}/+/readings", f"{prefix}/+/pack", f"{prefix}/+/status"]
    if share_group:
        return [f"$share/{share_group}/{f}" for f in filters]
    return filters


@lru_cache(maxsize=200_000)
def parse_topic(prefix: str, topic: str) -> DeviceTopic | None:
    """Split a device topic; ``None`` for anything outside the layout. Cached: topics repeat
    (a few per device) and the ingester parses one per message."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :]
    device_id, sep, kind = rest.rpartition("/")
    if not sep or not device_id or "/" in device_id or kind not in TOPIC_KINDS:
        return None
    return DeviceTopic(device_id, kind)


_AMQP_SWAP = str.maketrans("./", "/.")


def topic_of_routing_key(routing_key: str) -> str:
    """The MQTT topic of an AMQP routing key: RabbitMQ's MQTT plugin swaps ``/`` and
    ``.`` between the two (the scaled shape, docs/decisions.md)."""
    return routing_key.translate(_AMQP_SWAP)


def ingest_routing_keys(prefix: str) -> list[str]:
    """``amq.topic`` binding keys of the topics the ingester reads (``*``: one level)."""
    base = prefix.translate(_AMQP_SWAP)
    return [f"{base}.*.{kind}" for kind in ("readings", "pack", "status")]
