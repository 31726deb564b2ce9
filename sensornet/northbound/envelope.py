"""The envelope of a northbound request: a CloudEvents 1.0 batch (JSON batch mode,
``application/cloudevents-batch+json``: a JSON array of structured events).

Why CloudEvents: the CNCF's vendor-neutral envelope, with SDKs in every language and
support in the platforms an operations centre may run (Knative, Azure Event Grid, AWS
EventBridge, Alibaba EventBridge); its required attributes (``id``, ``source``, ``type``,
``time``) are what a receiver needs to dedupe, route and order. The version is in each
event's ``type`` (``city.sensornet.reading.v1``): a change that breaks a receiver gets a
new type, never a new meaning of the old one. docs/northbound.md describes every field."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from sensornet.northbound.events import Event, rfc3339_ns
from sensornet.northbound.spec import Kind

CONTENT_TYPE = "application/cloudevents-batch+json"
ENVELOPE_VERSION = "v1"
TYPES: dict[Kind, str] = {
    "readings": f"city.sensornet.reading.{ENVELOPE_VERSION}",
    "status": f"city.sensornet.status.{ENVELOPE_VERSION}",
    "alarms": f"city.sensornet.alarm.{ENVELOPE_VERSION}",
    "aggregates": f"city.sensornet.aggregate.{ENVELOPE_VERSION}",
}


def cloud_event(event: Event, source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": TYPES[event.kind],
        "subject": event.sensor_id,
        "time": rfc3339_ns(event.time_ns),
        "datacontenttype": "application/json",
        "sensortype": event.type,
        "subdistrict": event.subdistrict,
        "data": event.data,
    }


def batch_body(events: Sequence[Event], source: str) -> bytes:
    return orjson.dumps([cloud_event(e, source) for e in events])


def batch_id(subscription_id: str, events: Sequence[Event]) -> str:
    """The request's ``webhook-id``: the same for the same events (a retry), so a receiver
    may also dedupe whole requests; events carry their own ids in any case. A batch is a
    run of one stream in order, so its first and last ids and its length name it."""
    if not events:
        return "msg_empty"
    return run_id(subscription_id, events[0].id, events[-1].id, len(events))


def run_id(subscription_id: str, first_id: str, last_id: str, n: int) -> str:
    """``batch_id`` from the first and last event ids of a run of ``n``."""
    text = f"{subscription_id}\x00{first_id}\x00{last_id}\x00{n}"
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:32]
