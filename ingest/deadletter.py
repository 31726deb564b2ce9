"""Dead letters: every refused reading is written to InfluxDB (measurement
``dead_letter``) in the same batch as the good ones, so it is acknowledged only once
it is durable, and queryable by device, reason and time.

One point per refused reading keeps the accounting exact (a count per device and reason,
the reading's ``seq``). The message behind it is kept once: a pack of 10,000 refused items
is one message, so its first letter carries the topic and a bounded excerpt of the payload,
and every letter the SHA-256 of the whole payload to find it by (docs/payloads.md). Kept
once per item, a 256 KiB pack used to become ~870 MB of lines."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator

import orjson

from ingest.metrics import IngestStats
from ingest.pipeline import MAX_DETAIL, UNKNOWN_DEVICE, Reject
from sensornet.lineprotocol import encode_point
from sensornet.registry.store import SENSOR_ID

log = logging.getLogger("sensornet.ingest")

DEAD_LETTER_MEASUREMENT = "dead_letter"
# Bytes of a refused message kept: as base64, 21,848 characters, a third of the longest
# string InfluxDB 1.x stores in a field (64 KB).
EXCERPT_BYTES = 16 * 1024
MAX_TOPIC = 200
_SENSOR_TAG = re.compile(r",sensor_id=([A-Za-z0-9][A-Za-z0-9_.-]{0,63})[, ]")


def safe_device_tag(device_id: str | None) -> str:
    """A hostile id must not become a tag: only registry-shaped ids are used as tags."""
    if device_id and SENSOR_ID.match(device_id):
        return device_id
    return UNKNOWN_DEVICE


def printable(text: str, limit: int = 500) -> str:
    text = text[:limit]
    if text.isprintable() and "\\" not in text:  # the common case, without a loop
        return text or "?"
    cleaned = "".join(c if c.isprintable() and c != "\\" else "?" for c in text)
    return cleaned or "?"


def dead_letter_lines(rejects: Iterable[Reject], ts_ns: int) -> Iterator[str]:
    """One line per refused reading, at ``ts_ns`` + its position (one device's letters must
    not share a time: they would overwrite each other). Each message is hashed and kept
    once per call, however many of its items were refused; a line is at most ~22 KB.
    Lines are made as they are taken, so the caller decides how many exist at once."""
    kept: dict[tuple[bytes, str], str] = {}  # the objects themselves: no id() reuse
    n = ts_ns
    for reject in rejects:
        fields: dict[str, str | int] = {"detail": printable(reject.detail, MAX_DETAIL)}
        key = (reject.payload, reject.topic)
        digest = kept.get(key)
        if digest is None:
            digest = kept[key] = hashlib.sha256(reject.payload).hexdigest()
            fields["topic"] = printable(reject.topic, MAX_TOPIC)
            excerpt = reject.payload[:EXCERPT_BYTES]
            fields["payload_b64"] = base64.b64encode(excerpt).decode()
        fields["payload_sha256"] = digest
        fields["payload_bytes"] = len(reject.payload)
        if reject.named is not None:
            fields["device_raw"] = printable(reject.named, 100)
        if reject.seq is not None:
            fields["seq"] = reject.seq
        tags = {"device": safe_device_tag(reject.device_id), "reason": reject.reason}
        line = encode_point(DEAD_LETTER_MEASUREMENT, tags, fields, n)
        yield line
        n += 1
        if reject.count > 1:  # the items refused alike: the same letter at the next times
            if "payload_b64" in fields:
                del fields["payload_b64"], fields["topic"]
                line = encode_point(DEAD_LETTER_MEASUREMENT, tags, fields, n)
            head = line[: line.rindex(" ") + 1]
            for _ in range(reject.count - 1):
                yield f"{head}{n}"
                n += 1


def refused_line_reject(line: str, detail: str, topic: str) -> Reject:
    """A reading line InfluxDB refused, as a reject of the sensor its tags name (tags come
    from the registry, so that is a registered id)."""
    found = _SENSOR_TAG.search(line.split(" ", 1)[0] + " ")
    device = found.group(1) if found else UNKNOWN_DEVICE
    return Reject(device, "influx_rejected", detail, topic, line.encode())


def measurement_of(line: str) -> str:
    """The measurement a line writes (ours never escape a comma or space in it)."""
    return re.split(r"[ ,]", line, maxsplit=1)[0]


def count_dropped(stats: IngestStats, lines: list[str]) -> None:
    """Dead-letter and status lines InfluxDB refused (e.g. a field type conflict): there
    is nowhere left to keep them, so they are counted (``dropped_lines``, on /metrics and
    in ``platform_ingest``) and logged, never dropped unseen."""
    by_measurement: dict[str, list[str]] = {}
    for line in lines:
        by_measurement.setdefault(measurement_of(line), []).append(line)
    for measurement, dropped in by_measurement.items():
        stats.dropped_lines[measurement] += len(dropped)
        log.error(
            "ALARM InfluxDB refused %d %s line(s), not stored; first: %.300s",
            len(dropped),
            measurement,
            dropped[0],
        )


def log_rejects(rejects: list[Reject]) -> None:
    """One log line per device, reason and message, with how many of its items it
    stands for: a pack of 10,000 refused items is one line, not 10,000."""
    if not log.isEnabledFor(logging.INFO):
        return
    start, items = 0, 0
    for end, reject in enumerate(rejects, 1):
        items += reject.count
        if end < len(rejects):
            other = rejects[end]
            if (other.payload, other.reason, other.device_id) == (
                reject.payload,
                reject.reason,
                reject.device_id,
            ):
                continue
        first = rejects[start]
        log.info(
            "reject device=%s reason=%s named=%.64r items=%d detail=%.200s",
            first.device_id,
            first.reason,
            first.named,
            items,
            first.detail,
        )
        start, items = end, 0


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
