"""Network-server uplink envelopes to one ``Uplink`` record. Pure.

Two published formats, each followed as its project documents it:

- **ChirpStack v4**, ``UplinkEvent`` of ``api/proto/integration/integration.proto`` in the
  JSON marshaler (the Protocol Buffers JSON mapping: camelCase names, ``bytes`` as base64,
  and fields at their default value omitted, so a missing ``fCnt`` is 0). MQTT topic
  ``application/<application id>/device/<devEUI>/event/up``; the HTTP integration POSTs
  the same body with ``?event=up``.
- **The Things Stack v3**, ``ApplicationUp`` with ``uplink_message`` (``messages.proto``;
  JSON with snake_case names, empty fields omitted). MQTT topic
  ``v3/<application id>[@<tenant id>]/devices/<device id>/up``; webhooks POST the same body.

Time is the network server's receipt of the uplink (ChirpStack ``time``, TTS
``uplink_message.received_at``, else the Application Server's ``received_at``), never a
concentrator counter (``timestamp``, a wrapping µs count with no epoch). A retried
delivery of one uplink carries the same receipt time, so it overwrites itself in InfluxDB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from sensornet.deveui import dev_eui_or_none
from sensornet.errors import PayloadError
from sensornet.timestamps import rfc3339_to_ns

Network = Literal["chirpstack", "tts"]
_HEX16 = re.compile(r"^[0-9A-F]{16}$")
F_CNT_MAX = 2**32 - 1  # LoRaWAN 1.0.x/1.1 32-bit frame counters (16 bits on air)
MAX_DECODED_KEYS = 256
MAX_DEPTH = 4  # of a decoded payload object (orjson bounds the envelope's own nesting)


def parse_json(payload: bytes, max_bytes: int) -> Any:
    """The envelope as JSON: size first, then orjson; a UTF-8 BOM is tolerated."""
    if len(payload) > max_bytes:
        raise PayloadError("oversize", f"envelope of {len(payload)} bytes exceeds {max_bytes}")
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "UTF-8" in str(exc) else "invalid_json"
        raise PayloadError(reason, str(exc)[:200]) from None
    return doc


def _depth(value: Any, left: int) -> None:
    if isinstance(value, dict | list):
        if left == 0:
            raise PayloadError("too_deep", f"decoded payload nests deeper than {MAX_DEPTH} levels")
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                _depth(child, left - 1)


@dataclass(frozen=True, slots=True)
class Uplink:
    """One uplink as the platform needs it, whichever network server sent it."""

    network: Network
    dev_eui: str  # canonical (sensornet.deveui)
    application: str  # the network server's application id (ChirpStack UUID, TTS id)
    received_ns: int  # the network server's receipt time
    f_cnt: int
    f_port: int | None
    data: bytes  # FRMPayload, empty when none was sent
    decoded: dict[str, Any] | None  # the network server's codec output, when it ran one
    gateways: int = 0  # gateways (antennas) that heard it
    rssi: float | None = None  # the best of them, dBm
    snr: float | None = None  # the best of them, dB
    simulated: bool = False  # TTS: injected from the console or API, never on air
    uplink_id: str = ""  # ChirpStack deduplicationId, TTS correlation id "as:up:..."
    device_name: str = ""  # ChirpStack deviceName / TTS device_id
    extra: dict[str, Any] = field(default_factory=dict)  # health from other events


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a network server's MQTT topic says, to be checked against the body."""

    network: Network
    application: str
    device: str  # ChirpStack: the DevEUI (canonical); TTS: the device id
    event: str


def parse_topic(topic: str) -> TopicInfo | None:
    """A network server's uplink-side topic, or ``None`` for any other topic."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == "application" and parts[2] == "device":
        if parts[4] != "event":
            return None
        return TopicInfo("chirpstack", parts[1], parts[3], parts[5])
    if len(parts) >= 5 and parts[0] == "v3" and parts[2] == "devices":
        application = parts[1].split("@", 1)[0]
        return TopicInfo("tts", application, parts[3], "/".join(parts[4:]))
    return None


def _bad(detail: str) -> PayloadError:
    return PayloadError("bad_envelope", detail)


def _object(doc: Any, key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise _bad(f"{where}{key} must be an object, got {type(value).__name__}")
    return value


def _text(doc: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise _bad(f"{where}{key} must be a non-empty string, got {value!r:.40}")
    return value


def _uint(doc: dict[str, Any], key: str, where: str, top: int) -> int | None:
    """An unsigned protobuf integer; absent is ``None`` (the caller knows its default).
    The JSON mapping writes 64-bit integers as strings, 32-bit ones as numbers; both are
    taken."""
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise _bad(f"{where}{key} must be an integer in [0, {top}], got {value!r:.40}")
    return value


def frm_bytes(doc: dict[str, Any], key: str, where: str, max_bytes: int) -> bytes:
    value = doc.get(key)
    if value is None:
        return b""
    if not isinstance(value, str) or len(value) > 2 * max_bytes:
        raise _bad(f"{where}{key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"{where}{key} is not base64: {exc}") from None


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


@functools.lru_cache(maxsize=4096)
def _whole_seconds_ns(text: str) -> int:
    return rfc3339_to_ns(text)


# "YYYY-MM-DDTHH:MM:SS" of UTC times already parsed (by _RFC3339) -> ns: the common case
# (both servers write UTC, "Z") is then a slice, a lookup and the fraction's digits
_UTC_SECONDS: dict[str, int] = {}
_FRACTION_NS: list[int] = [0, *(10 ** (9 - digits) for digits in range(1, 10))]


def receipt_time(doc: dict[str, Any], key: str, where: str) -> int | None:
    """Both servers write RFC 3339 with up to 9 fraction digits and ``Z`` or an offset;
    uplinks of one second share its (cached) conversion, the fraction is added."""
    value = doc.get(key)
    if value is None:
        return None
    if type(value) is str and value[-1:] == "Z":
        text: str = value
        whole = _UTC_SECONDS.get(text[:19])
        if whole is not None:
            if len(text) == 20:
                return whole
            fraction = text[20:-1]
            if text[19] == "." and 0 < len(fraction) <= 9 and fraction.isascii() \
                    and fraction.isdigit():  # fmt: skip
                return whole + int(fraction) * _FRACTION_NS[len(fraction)]
    if not isinstance(value, str):
        raise PayloadError("bad_timestamp", f"{where}{key} must be RFC 3339, got {value!r:.40}")
    match = _RFC3339.match(value)
    if match is None:
        return rfc3339_to_ns(value)  # its error says what is wrong
    main, fraction, offset = match.groups()
    whole = _whole_seconds_ns(main + offset)
    if offset == "Z":
        if len(_UTC_SECONDS) >= 4096:
            _UTC_SECONDS.clear()
        _UTC_SECONDS[main] = whole
    return whole + int(fraction.ljust(9, "0")) if fraction else whole


def _decoded(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object, got {type(value).__name__}")
    if len(value) > MAX_DECODED_KEYS:
        raise PayloadError("too_many", f"{where} has {len(value)} keys")
    for child in value.values():
        if isinstance(child, dict | list):
            _depth(child, MAX_DEPTH - 1)
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def radio_summary(rx: Any, where: str) -> tuple[int, float | None, float | None]:
    """Gateway count and the best RSSI and SNR among them (the ones that decide whether
    the device is heard at all). Malformed entries are skipped: radio metadata is health,
    never a reason to refuse the reading."""
    if rx is None:
        return 0, None, None
    if not isinstance(rx, list):
        raise _bad(f"{where} must be an array")
    rssi = snr = None
    count = 0
    for entry in rx:
        if not isinstance(entry, dict):
            continue
        count += 1
        r, s = entry.get("rssi"), entry.get("snr")
        # a float that is finite as it is (x - x is NaN for an infinity), else _number
        r = r if type(r) is float and r - r == 0 else _number(r)
        s = s if type(s) is float and s - s == 0 else _number(s)
        if r is not None and (rssi is None or r > rssi):
            rssi = r
        if s is not None and (snr is None or s > snr):
            snr = s
    return count, rssi, snr


def body_dev_eui(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{where} is missing: the device cannot be named")
    upper = value.upper()
    if len(upper) == 16 and _HEX16.match(upper):  # as both network servers write it
        return upper
    canonical = dev_eui_or_none(value)
    if canonical is None:
        raise PayloadError("bad_dev_eui", f"{where} {value!r:.40} is not 16 hex digits")
    return canonical


def parse_chirpstack(doc: Any, max_bytes: int, event: str = "up") -> Uplink:
    """ChirpStack v4 ``UplinkEvent`` (``event="up"``) or ``StatusEvent`` (``"status"``:
    battery and link margin, kept as device health) in the JSON marshaler's form."""
    if not isinstance(doc, dict):
        raise _bad(f"event must be a JSON object, got {type(doc).__name__}")
    info = _object(doc, "deviceInfo", "")
    dev_eui = body_dev_eui(info.get("devEui"), "deviceInfo.devEui")
    received = receipt_time(doc, "time", "")
    if received is None:
        raise PayloadError("bad_timestamp", "time (the network server's receipt) is missing")
    application = _text(info, "applicationId", "deviceInfo.", required=False)
    name = _text(info, "deviceName", "deviceInfo.", required=False)
    uplink_id = _text(doc, "deduplicationId", "", required=False)
    if event == "status":
        extra: dict[str, Any] = {}
        margin = _number(doc.get("margin"))
        if margin is not None:
            extra["margin"] = margin
        if not doc.get("batteryLevelUnavailable") and not doc.get("externalPowerSource"):
            level = _number(doc.get("batteryLevel"))
            if level is not None:
                extra["battery_pct"] = level
        extra["external_power"] = bool(doc.get("externalPowerSource"))
        return Uplink("chirpstack", dev_eui, application, received, 0, None, b"", None,
                      uplink_id=uplink_id, device_name=name, extra=extra)  # fmt: skip
    f_cnt = _uint(doc, "fCnt", "", F_CNT_MAX) or 0  # omitted at 0 (proto3 JSON)
    f_port = _uint(doc, "fPort", "", 255)
    gateways, rssi, snr = radio_summary(doc.get("rxInfo"), "rxInfo")
    return Uplink(
        "chirpstack",
        dev_eui,
        application,
        received,
        f_cnt,
        f_port,
        frm_bytes(doc, "data", "", max_bytes),
        _decoded(doc.get("object"), "object"),
        gateways,
        rssi,
        snr,
        uplink_id=uplink_id,
        device_name=name,
    )


def parse_tts(doc: Any, max_bytes: int) -> Uplink:
    """The Things Stack v3 ``ApplicationUp`` carrying an ``uplink_message``."""
    if not isinstance(doc, dict):
        raise _bad(f"message must be a JSON object, got {type(doc).__name__}")
    ids = _object(doc, "end_device_ids", "")
    if "uplink_message" not in doc:
        kinds = [k for k in doc if k not in ("end_device_ids", "correlation_ids", "received_at")]
        raise PayloadError("not_an_uplink", f"no uplink_message (has {', '.join(kinds[:4])})")
    up = _object(doc, "uplink_message", "")
    dev_eui = body_dev_eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
    app_ids = ids.get("application_ids")
    application = ""
    if isinstance(app_ids, dict):
        application = _text(app_ids, "application_id", "end_device_ids.application_ids.")
    received = receipt_time(up, "received_at", "uplink_message.")
    if received is None:
        received = receipt_time(doc, "received_at", "")
    if received is None:
        raise PayloadError("bad_timestamp", "received_at is missing")
    correlation = doc.get("correlation_ids")
    uplink_id = ""
    if isinstance(correlation, list):
        uplink_id = next(
            (c for c in correlation if isinstance(c, str) and c.startswith("as:up:")), ""
        )
    gateways, rssi, snr = radio_summary(up.get("rx_metadata"), "uplink_message.rx_metadata")
    simulated = doc.get("simulated", False)
    if not isinstance(simulated, bool):
        raise _bad(f"simulated must be true or false, got {simulated!r:.20}")
    return Uplink(
        "tts",
        dev_eui,
        application,
        received,
        _uint(up, "f_cnt", "uplink_message.", F_CNT_MAX) or 0,  # omitted at 0
        _uint(up, "f_port", "uplink_message.", 255),
        frm_bytes(up, "frm_payload", "uplink_message.", max_bytes),
        _decoded(up.get("decoded_payload"), "uplink_message.decoded_payload"),
        gateways,
        rssi,
        snr,
        simulated,
        uplink_id,
        _text(ids, "device_id", "end_device_ids.", required=False),
    )


def _check_topic(topic: TopicInfo, uplink: Uplink) -> None:
    """The topic is what the network server's broker routed by (and what its ACLs, if
    any, confined): a body naming another device or application is refused."""
    if topic.network == "chirpstack":
        if (
            topic.device.upper() != uplink.dev_eui
            and dev_eui_or_none(topic.device) != uplink.dev_eui
        ):
            detail = f"topic names device {topic.device!r:.40}, body {uplink.dev_eui}"
            raise PayloadError("topic_mismatch", detail)
    elif uplink.device_name and topic.device != uplink.device_name:
        detail = f"topic names device {topic.device!r:.40}, body {uplink.device_name!r:.40}"
        raise PayloadError("topic_mismatch", detail)
    if uplink.application and topic.application != uplink.application:
        detail = (
            f"topic names application {topic.application!r:.40}, body {uplink.application!r:.40}"
        )
        raise PayloadError("topic_mismatch", detail)


def parse_uplink(
    payload: bytes, network: Network, max_bytes: int, topic: str = "", event: str = "up"
) -> Uplink:
    """One envelope from ``network``. With an MQTT ``topic``, the topic must be an uplink
    (or ChirpStack status) topic of that network and agree with the body, and names the
    event; without one (an HTTP integration, which says the ``event`` itself) the body
    alone names the device."""
    info = parse_topic(topic) if topic else None
    if topic and (info is None or info.network != network):
        raise PayloadError("bad_topic", f"not a {network} uplink topic: {topic!r:.80}")
    if info is not None:
        event = info.event
    if event not in ("up", "status") or (network == "tts" and event != "up"):
        raise PayloadError("not_an_uplink", f"{network} event {event!r:.40} carries no readings")
    doc = parse_json(payload, max_bytes)
    uplink = (
        parse_chirpstack(doc, max_bytes, event) if network == "chirpstack"
        else parse_tts(doc, max_bytes)
    )  # fmt: skip
    if info is not None:
        _check_topic(info, uplink)
    return uplink
