"""Resolved SenML records to raw readings: which device, which quantity, in which unit. Pure.

**Which device.** A sensor's SenML name is its registry field ``senml_name`` when set
(``urn:dev:ow:10e2073a01080063``, ``urn:dev:mac:0024befffe804ff1``, ``2001:db8::2``), else
its registry id. A record's resolved name belongs to the sensor whose SenML name is the
longest prefix of it that ends at the end of the name or right before one separator
(``:``, ``/``, ``.``, ``-``, ``_``); what follows that separator is the quantity. So
``urn:dev:ow:10e2073a01080063:temp`` finds the sensor registered as
``urn:dev:ow:10e2073a01080063`` and the quantity ``temp``, ``2001:db8::2/humidity`` finds
``2001:db8::2``: the name is matched against the registry, never cut at a guessed colon.
A name that is a quantity of the device of the topic (or of the HTTP credentials) belongs
to that device: ``[{"n": "pm25", "v": 12}]`` on ``city/v1/AQ-1/readings`` is AQ-1's.

**Which quantity.** The part after the device's name, a catalogue quantity id. A record
naming the device itself (``{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel"}``, RFC 8428
§5.1.1) measures the one quantity of its type with that unit's dimension; none or several:
refused (``senml_no_quantity``). A name ``seq`` carries the reading's sequence number.
Keys the catalogue does not know pass through, for the pipeline's unknown-key accounting.

**Which unit.** A numeric record with a unit is brought to the quantity's unit
(``Quantity.senml_unit``) when both are of one dimension (``Far`` to ``Cel``, ``Pa`` to
``hPa``), refused otherwise (``senml_unit_mismatch``, ``senml_unknown_unit``). Without a
unit the value is taken as in the catalogue's unit. A Sum (``s``) is the quantity's value
when the record has no other value; beside a value it is the key ``<quantity>_sum``.

Records of one device and one time become one reading, as the platform stores readings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sensornet.catalogue import Catalogue, Quantity, SensorType
from sensornet.errors import PayloadError
from sensornet.records import Decoded, ItemReject, RawReading
from sensornet.registry.store import DeviceInfo
from sensornet.senml import Pack, Record
from sensornet.senml_units import UNITS, UnitError, convert, wire_unit

SEPARATORS = frozenset(":/.-_")
SEQ_NAME = "seq"
MAX_NAME = 256  # characters; longer names are refused before any registry lookup


@dataclass(frozen=True, slots=True)
class SenmlContext:
    """What resolution needs from outside: the catalogue, the registry's SenML names, the
    device the message came from (its topic or credentials; None when unknown)."""

    catalogue: Catalogue
    find: Callable[[str], DeviceInfo | None]  # a SenML name (or id) -> the sensor
    publisher: DeviceInfo | None = None
    #: names already resolved, kept by the caller while the registry does not change
    memo: dict[tuple[str, str | None], tuple[DeviceInfo, str] | None] | None = None


def no_registry(catalogue: Catalogue) -> SenmlContext:
    """A context that knows no device: every named record is ``unknown_sensor``."""
    return SenmlContext(catalogue, lambda name: None)


def _types(ctx: SenmlContext, device: DeviceInfo) -> SensorType | None:
    return ctx.catalogue.types.get(device.type)


def find_device(name: str, ctx: SenmlContext) -> tuple[DeviceInfo, str] | None:
    """The device a resolved name belongs to and the rest of the name ('' when the name is
    the device's own)."""
    publisher = ctx.publisher
    if publisher is not None:
        sensor_type = _types(ctx, publisher)
        if name == SEQ_NAME or (sensor_type is not None and name in sensor_type.quantities):
            return publisher, name
        # the common case: the publisher's own name, then one of its quantities
        own = publisher.senml_name or publisher.id
        rest = name[len(own) + 1 :]
        if (
            name.startswith(own)
            and len(name) > len(own)
            and name[len(own)] in SEPARATORS
            and (rest == SEQ_NAME or (sensor_type is not None and rest in sensor_type.quantities))
        ):
            return publisher, rest
    # Only where the rest would start at a separator (or be empty): longest prefix first.
    cuts = [len(name)] + [i for i in range(len(name) - 1, 0, -1) if name[i] in SEPARATORS]
    for cut in cuts:
        device = ctx.find(name[:cut])
        if device is not None:
            return device, name[cut + 1 :]
    return None


def _by_unit(sensor_type: SensorType, unit: str | None, name: str) -> Quantity:
    if unit is None:
        numeric = [q for q in sensor_type.quantities.values() if q.senml_unit is not None]
        if len(numeric) == 1:
            return numeric[0]
        raise PayloadError(
            "senml_no_quantity", f"{name!r:.80} names the sensor, not a quantity, and no unit"
        )
    dimension = wire_unit(unit).dimension
    matches = [
        q
        for q in sensor_type.quantities.values()
        if q.senml_unit is not None and UNITS[q.senml_unit].dimension == dimension
    ]
    if len(matches) != 1:
        which = [q.id for q in matches] or "none"
        raise PayloadError(
            "senml_no_quantity",
            f"{name!r:.80} names the sensor, not a quantity; {sensor_type.id} quantities in"
            f" {unit}: {which}",
        )
    return matches[0]


def _in_unit(value: float, unit: str | None, quantity: Quantity | None) -> float:
    if unit is None or quantity is None:
        return value  # no unit: the catalogue's; an unknown key: kept as sent, counted
    if quantity.senml_unit is None:
        raise UnitError(
            "senml_unit_mismatch", f"{quantity.id} has no SenML unit; send it without 'u'"
        )
    return convert(value, unit, quantity.senml_unit)


def _seq(record: Record) -> int:
    value = record.value
    if record.kind != "v" or not isinstance(value, float | int) or not float(value).is_integer():
        raise PayloadError("bad_seq", "SenML 'seq' must be a whole number in 'v'")
    if record.unit not in (None, "count") or not 0 <= value < 2**63:
        raise PayloadError("bad_seq", f"SenML 'seq' {value!r:.40} is not a sequence number")
    return int(value)


def to_readings(pack: Pack, ctx: SenmlContext) -> Decoded:
    """Group resolved records into readings, one per device and time. A reading is stored
    whole or refused whole, as every reading of the platform: one bad record refuses the
    reading it belongs to (with its ``seq``, for the device's accounting)."""
    out = Decoded([], list(pack.rejects))
    grouped: dict[tuple[str, int | None], RawReading] = {}
    failed: dict[tuple[str, int | None], PayloadError] = {}
    found = {} if ctx.memo is None else ctx.memo
    publisher_id = None if ctx.publisher is None else ctx.publisher.id
    for record in pack.records:
        slot: tuple[str, int | None] | None = None
        try:
            name = record.name
            if len(name) > MAX_NAME:
                raise PayloadError("bad_senml", f"SenML name of {len(name)} characters")
            memo_key = (name, publisher_id)
            if memo_key in found:
                hit = found[memo_key]
            else:
                hit = found[memo_key] = find_device(name, ctx)
            if hit is None:
                raise PayloadError(
                    "unknown_sensor", f"SenML name {name!r:.80} matches no registered sensor"
                )
            device, key = hit
            slot = (device.id, record.time_ns)
            reading = grouped.get(slot)
            if reading is None:
                reading = grouped[slot] = RawReading({}, record.time_ns, None, device.id)
            if key == SEQ_NAME:
                if reading.seq is not None:
                    raise PayloadError("duplicate_key", "SenML repeats 'seq' at one time")
                reading.seq = _seq(record)
            else:
                _put(reading, record, key, device, ctx)
        except (PayloadError, UnitError) as exc:
            error: PayloadError = (
                exc if isinstance(exc, PayloadError) else PayloadError(exc.reason, exc.detail)
            )
            error.__traceback__ = None
            if slot is None:  # no device: the record alone
                out.rejects.append(ItemReject(record.index, None, error))
            else:
                failed.setdefault(slot, error)
    for slot, reading in grouped.items():
        refusal = failed.get(slot)
        if refusal is None and not reading.values:
            refusal = PayloadError("no_values", "SenML reading carries a seq and no value")
        if refusal is None:
            out.readings.append(reading)
        else:
            out.rejects.append(ItemReject(-1, reading.sensor_id, refusal, reading.seq))
    return out


def _put(
    reading: RawReading, record: Record, key: str, device: DeviceInfo, ctx: SenmlContext
) -> None:
    sensor_type = _types(ctx, device)
    quantity: Quantity | None
    if key == "":
        if sensor_type is None:
            raise PayloadError("unknown_type", f"sensor {device.id} has an unknown type")
        quantity = _by_unit(sensor_type, record.unit, record.name)
        key = quantity.id
    else:
        quantity = None if sensor_type is None else sensor_type.quantities.get(key)
    entries: list[tuple[str, float | str | bool]] = []
    if record.kind is not None and record.value is not None:
        value = record.value
        if record.kind == "v" and isinstance(value, float):
            value = _in_unit(value, record.unit, quantity)
        entries.append((key, value))
    if record.sum is not None:
        sum_key = key if record.kind is None else f"{key}_sum"
        sum_q = quantity if record.kind is None else None
        if sensor_type is not None and sum_q is None:
            sum_q = sensor_type.quantities.get(sum_key)
        entries.append((sum_key, _in_unit(record.sum, record.unit, sum_q)))
    for entry_key, value in entries:
        if entry_key in reading.values:
            raise PayloadError("duplicate_key", f"SenML repeats {entry_key!r:.60} at one time")
        reading.values[entry_key] = value
