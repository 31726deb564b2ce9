"""SenML packs (RFC 8428) to resolved records: JSON (§5) and CBOR (§6). Pure, no registry.

What the RFC asks of a reader, and what this module does:
- Base fields (``bn``, ``bt``, ``bu``, ``bv``, ``bs``, ``bver``) apply to their record and
  every later one until redefined (§4.1); a record holding only base fields carries none.
- The resolved name is ``bn + n`` and must match the RFC's name rule (§4.5.1); it is kept
  whole. Which device a name belongs to is decided against the registry, never by cutting
  it at a guessed separator (``sensornet.senml_resolve``).
- Time is ``bt + t`` in seconds; below 2**28 it is relative to now (§4.5.3). A record with
  no time at all is "now", which the platform reads as the message's arrival time.
- ``v`` is added to ``bv``, ``s`` to ``bs``; a record may carry one of ``v``/``vs``/``vb``/
  ``vd`` and a Sum ``s`` beside or instead of it (§4.2).
- ``bver`` above 10 (this RFC's version) is refused: the pack must not be used (§4.4).
- A label ending in ``_`` is must-understand: a pack carrying one is refused whole (§4.4);
  other unknown labels are ignored, as the RFC requires.
- CBOR uses the integer labels of §6 (Table 4); ``vd`` is a byte string there and base64url
  text in JSON. Both become the same records.

Faults of the pack as a whole raise ``PayloadError``; a bad record is one ``ItemReject``
and the other records stand.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import cbor2

from sensornet.errors import PayloadError
from sensornet.records import ItemReject

SUPPORTED_VERSION = 10  # RFC 8428 §4.4: the version of this specification
RELATIVE_BELOW_S = 2**28  # RFC 8428 §4.5.3
MAX_RECORDS = 10_000
_MAX_ABS_TIME_S = 1e11  # the year 5138: anything beyond is not a time, it is an error

Kind = Literal["v", "vs", "vb", "vd"]

#: RFC 8428 §6, Table 4: CBOR integer labels.
CBOR_LABELS: dict[int, str] = {
    -1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
    0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd",
}  # fmt: skip
JSON_TO_CBOR: dict[str, int] = {label: key for key, label in CBOR_LABELS.items()}
_BASE = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_RECORD = frozenset({"n", "u", "t", "s", "ut", "v", "vs", "vb", "vd"})
_OTHER_VALUES = frozenset({"vs", "vb", "vd"})
_good_names: set[str] = set()  # names that passed NAME_RE (bounded: cleared past 100,000)
_VALUES: tuple[Kind, ...] = ("v", "vs", "vb", "vd")
# RFC 8428 §4.5.1: the resolved name's characters, and its first one.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


@dataclass(slots=True)  # not frozen: built per record, and frozen init costs a setattr each
class Record:
    """One resolved SenML record (RFC 8428 §4.6): every base field applied."""

    index: int  # position in the pack, for refusals
    name: str
    unit: str | None
    kind: Kind | None  # None: a Sum only
    value: float | str | bool | None  # vd: base64url text without padding
    sum: float | None
    time_ns: int | None  # None: no time given, i.e. "now"
    relative: bool = False  # the time was relative to now (§4.5.3)


@dataclass(slots=True)
class Pack:
    records: list[Record] = field(default_factory=list)
    rejects: list[ItemReject] = field(default_factory=list)


def loads_cbor(payload: bytes) -> list[dict[str, Any]]:
    """A SenML CBOR pack (RFC 8428 §6) as JSON-labelled records."""
    stream = io.BytesIO(payload)
    try:
        doc = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError) as exc:
        raise PayloadError("invalid_cbor", str(exc)[:200]) from exc
    except Exception as exc:  # a tag's own decoder raising something else: still bad input
        raise PayloadError("invalid_cbor", f"{type(exc).__name__}: {exc}"[:200]) from exc
    if stream.tell() != len(payload):
        raise PayloadError("invalid_cbor", f"{len(payload) - stream.tell()} bytes after the pack")
    if not isinstance(doc, list):
        raise PayloadError("bad_senml", f"SenML CBOR must be an array, not {type(doc).__name__}")
    records: list[dict[str, Any]] = []
    for item in doc:
        if not isinstance(item, dict):
            raise PayloadError("bad_senml", "SenML records must be maps")
        record: dict[str, Any] = {}
        for key, value in item.items():
            if isinstance(key, bool):
                raise PayloadError("bad_senml", f"SenML CBOR label {key!r} is not a label")
            if isinstance(key, int):
                label = CBOR_LABELS.get(key)
                if label is None:
                    continue  # an extension we do not know, and not must-understand
            elif isinstance(key, str):
                label = key  # a string label: an extension (§6); '_' still means must-understand
                if label in JSON_TO_CBOR:
                    raise PayloadError(
                        "bad_senml", f"SenML CBOR must use integer label {JSON_TO_CBOR[label]}"
                        f" for {label!r}"
                    )  # fmt: skip
            else:
                raise PayloadError("bad_senml", f"SenML CBOR label of type {type(key).__name__}")
            if label == "vd" and isinstance(value, bytes):
                value = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
            elif label == "vd":
                raise PayloadError("bad_senml", "SenML CBOR 'vd' must be a byte string")
            record[label] = value
        records.append(record)
    return records


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | Fraction):
        raise PayloadError("bad_senml", f"SenML '{label}' must be a number, got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        raise PayloadError("bad_senml", f"SenML '{label}' is too large") from None
    return number


def _text(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise PayloadError("bad_senml", f"SenML '{label}' must be a string, got {value!r:.40}")
    return value


def _check_labels(record: dict[str, Any]) -> None:
    for label in record:
        if label.endswith("_"):
            raise PayloadError(
                "senml_must_understand",
                f"SenML label {label!r:.40} must be understood and is not (RFC 8428 §4.4)",
            )


def _version(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PayloadError("bad_senml", f"SenML 'bver' must be a positive integer: {value!r:.40}")
    if value > SUPPORTED_VERSION:
        raise PayloadError(
            "senml_version", f"SenML version {value} is newer than {SUPPORTED_VERSION}"
        )


def _data(value: Any) -> str:
    text = _text(value, "vd")
    if not _B64URL.fullmatch(text):
        raise PayloadError("bad_senml", "SenML 'vd' must be base64url")
    stripped = text.rstrip("=")
    try:
        base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise PayloadError("bad_senml", "SenML 'vd' is not valid base64url") from None
    return stripped


def _time_ns(seconds: float, now_ns: int) -> tuple[int, bool]:
    if not math.isfinite(seconds) or abs(seconds) >= _MAX_ABS_TIME_S:
        raise PayloadError("bad_timestamp", f"SenML time {seconds!r} is out of range")
    # To the microsecond: a double holds epoch seconds * 1e6 exactly, not * 1e9.
    ns = round(seconds * 1e6) * 1000
    if seconds < RELATIVE_BELOW_S:
        return now_ns + ns, True
    return ns, False


def resolve_pack(items: list[Any], now_ns: int) -> Pack:
    """Resolve a decoded pack (a JSON array, or ``loads_cbor``'s records)."""
    if len(items) > MAX_RECORDS:
        raise PayloadError("too_many", f"{len(items)} SenML records in one pack")
    pack = Pack()
    base_name, base_unit = "", None
    base_time = base_value = base_sum = 0.0
    for index, record in enumerate(items):
        if not isinstance(record, dict):
            raise PayloadError("bad_senml", "SenML records must be objects")
        _check_labels(record)
        # Base fields first: a bad one spoils every later record, so the pack is refused.
        if not _BASE.isdisjoint(record):
            if "bver" in record:
                _version(record["bver"])
            if "bn" in record:
                base_name = _text(record["bn"], "bn")
            if "bu" in record:
                base_unit = _text(record["bu"], "bu")
            if "bt" in record:
                base_time = _number(record["bt"], "bt")
            if "bv" in record:
                base_value = _number(record["bv"], "bv")
            if "bs" in record:
                base_sum = _number(record["bs"], "bs")
        if _RECORD.isdisjoint(record):
            continue  # only base fields
        try:
            pack.records.append(
                _record(record, index, base_name, base_unit, base_time, base_value, base_sum,
                        now_ns)
            )  # fmt: skip
        except PayloadError as exc:
            exc.__traceback__ = None
            pack.rejects.append(ItemReject(index, None, exc))
    if not pack.records and not pack.rejects:
        raise PayloadError("no_values", "SenML pack carries no records")
    return pack


def _record(
    record: dict[str, Any],
    index: int,
    base_name: str,
    base_unit: str | None,
    base_time: float,
    base_value: float,
    base_sum: float,
    now_ns: int,
) -> Record:
    name = base_name + _text(record.get("n", ""), "n")
    if name not in _good_names:
        if not NAME_RE.fullmatch(name):
            raise PayloadError("bad_senml", f"SenML name {name!r:.80} breaks RFC 8428 §4.5.1")
        if len(_good_names) > 100_000:
            _good_names.clear()
        _good_names.add(name)
    unit = _text(record["u"], "u") if "u" in record else base_unit
    if "v" in record and _OTHER_VALUES.isdisjoint(record):  # the common record, quickly
        v = record["v"]
        kind: Kind | None = "v"
        value: float | str | bool | None = (
            base_value + v if type(v) is float else base_value + _number(v, "v")
        )
        return _finish(record, index, name, unit, kind, value, base_time, base_sum, now_ns)
    present: list[Kind] = [k for k in _VALUES if k in record]
    if len(present) > 1:
        raise PayloadError("bad_senml", f"SenML record has several values: {present}")
    kind = present[0] if present else None
    value = None
    if kind == "v":
        value = base_value + _number(record["v"], "v")
    elif kind == "vs":
        value = _text(record["vs"], "vs")
    elif kind == "vb":
        value = record["vb"]
        if not isinstance(value, bool):
            raise PayloadError("bad_senml", "SenML 'vb' must be a boolean")
    elif kind == "vd":
        value = _data(record["vd"])
    return _finish(record, index, name, unit, kind, value, base_time, base_sum, now_ns)


def _finish(
    record: dict[str, Any],
    index: int,
    name: str,
    unit: str | None,
    kind: Kind | None,
    value: float | str | bool | None,
    base_time: float,
    base_sum: float,
    now_ns: int,
) -> Record:
    total = base_sum + _number(record["s"], "s") if "s" in record else None
    if kind is None and total is None:
        raise PayloadError("senml_no_value", f"SenML record {name!r:.80} has no value or sum")
    if "ut" in record:
        _number(record["ut"], "ut")  # understood; the platform keeps no update time
    time_ns, relative = None, False
    if "t" in record or "bt" in record or base_time:
        time_ns, relative = _time_ns(base_time + _number(record.get("t", 0), "t"), now_ns)
    return Record(index, name, unit, kind, value, total, time_ns, relative)
