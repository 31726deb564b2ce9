"""Dead letters: every refused reading is written to InfluxDB (measurement
``dead_letter``) in the same batch as the good ones, so it is acknowledged only once
it is durable, and queryable by device, reason and time."""

from __future__ import annotations

import base64

import orjson

from ingest.pipeline import Reject
from sensornet.lineprotocol import encode_point
from sensornet.registry.store import SENSOR_ID

DEAD_LETTER_MEASUREMENT = "dead_letter"
MAX_KEPT_PAYLOAD = 64 * 1024


def safe_device_tag(device_id: str | None) -> str:
    """A hostile id must not become a tag: only registry-shaped ids are used as tags."""
    if device_id and SENSOR_ID.match(device_id):
        return device_id
    return "_invalid"


def printable(text: str, limit: int = 500) -> str:
    cleaned = "".join(c if c.isprintable() and c != "\\" else "?" for c in text[:limit])
    return cleaned or "?"


def dead_letter_line(reject: Reject, ts_ns: int) -> str:
    fields: dict[str, str | int] = {
        "detail": printable(reject.detail),
        "topic": printable(reject.topic),
        "payload_b64": base64.b64encode(reject.payload[:MAX_KEPT_PAYLOAD]).decode(),
        "payload_bytes": len(reject.payload),
    }
    if reject.device_id is not None:
        fields["device_raw"] = printable(reject.device_id, 200)
    if reject.seq is not None:
        fields["seq"] = reject.seq
    tags = {"device": safe_device_tag(reject.device_id), "reason": reject.reason}
    return encode_point(DEAD_LETTER_MEASUREMENT, tags, fields, ts_ns)


STATUS_MEASUREMENT = "device_status"
STATES = frozenset({"online", "offline"})


def status_line(device_id: str, payload: bytes, ts_ns: int) -> str:
    """A device's status message (or its Last Will) as a point; plain text or
    ``{"state": ...}``. Anything else is kept as state ``unknown``."""
    text = payload[:200].decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            state = str(orjson.loads(payload).get("state", ""))
        except (orjson.JSONDecodeError, AttributeError):
            state = ""
    else:
        state = text
    state = state if state in STATES else "unknown"
    return encode_point(
        STATUS_MEASUREMENT,
        {"sensor_id": safe_device_tag(device_id)},
        {"state": state, "raw": printable(text, 200)},
        ts_ns,
    )
