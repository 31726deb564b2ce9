"""The sensor catalogue: which sensor types exist and what each one measures.

It is data (``sensornet/data/catalogue.yaml``) so that adding a sensor type needs no code. It
is checked strictly on load: the ingester trusts it for field names and valid ranges, so a typo
must fail at start-up, naming the file and entry, rather than corrupt stored data later.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NoReturn, get_args

import yaml

from sensornet.errors import CatalogueError, UnknownSensorType
from sensornet.lorawan.codecs import Codec, parse_codec
from sensornet.senml_units import UNITS

__all__ = [
    "ID_RE",
    "PLACEMENTS",
    "QUANTITY_KINDS",
    "RESERVED_FIELD_IDS",
    "Catalogue",
    "Quantity",
    "QuantityKind",
    "SensorType",
    "load_catalogue",
]

QuantityKind = Literal["float", "int", "bool", "string"]
QUANTITY_KINDS: tuple[QuantityKind, ...] = get_args(QuantityKind)
PLACEMENTS: frozenset[str] = frozenset({"road", "street", "park", "river", "building", "any"})
# Keys with a meaning of their own in a flat JSON payload, plus InfluxDB's time column.
RESERVED_FIELD_IDS: frozenset[str] = frozenset({"ts", "seq", "values", "time"})

# Ids become InfluxDB measurement/field names, tag values and file names: keep them plain.
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS: dict[str, QuantityKind] = {kind: kind for kind in QUANTITY_KINDS}
_NUMERIC: frozenset[str] = frozenset({"float", "int"})


@dataclass(frozen=True, slots=True)
class Quantity:
    """One field a sensor type reports."""

    id: str
    label: str
    unit: str
    kind: QuantityKind
    min: float | None  # physically valid range; None for bool/string
    max: float | None
    typical: tuple[float, float] | None  # normal city conditions; what the simulator draws
    allowed: tuple[str, ...] | None  # closed value set, string kind only
    senml_unit: str | None = None  # its unit by SenML name (sensornet.senml_units); None: none


@dataclass(frozen=True, slots=True)
class SensorType:
    """A kind of device; its id is also its InfluxDB measurement."""

    id: str
    label: str
    label_zh: str
    interval_s: float
    placement: str
    quantities: Mapping[str, Quantity]  # ordered as in the file
    # how its raw LoRaWAN payload is decoded when the network server did not (optional)
    codec: Codec | None = None

    @property
    def measurement(self) -> str:
        return self.id


@dataclass(frozen=True)
class Catalogue:
    """All sensor types, ordered as in the file."""

    types: Mapping[str, SensorType]

    def get(self, type_id: str) -> SensorType:
        try:
            return self.types[type_id]
        except KeyError:
            known = ", ".join(self.types)
            raise UnknownSensorType(
                f"unknown sensor type {type_id!r}; known types: {known}"
            ) from None


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and check a catalogue; the packaged one (``path=None``) is read only once."""
    if path is None:
        return _packaged_catalogue()
    return _parse_catalogue(read_yaml(path), str(path))


@functools.cache
def _packaged_catalogue() -> Catalogue:
    resource = resources.files("sensornet") / "data" / "catalogue.yaml"
    return _parse_catalogue(read_yaml(resource), str(resource))


# --- checked reading, shared with sensornet.district ----------------------------------------


def read_yaml(source: Path | Traversable) -> object:
    """Parse a YAML file, turning I/O and syntax errors into ``CatalogueError``."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: not valid YAML: {exc}") from exc


class Entry:
    """Typed reads from one YAML mapping; every failure names the file and the entry."""

    def __init__(
        self,
        source: str,
        where: str,
        raw: object,
        required: Collection[str],
        optional: Collection[str] = (),
        named: Callable[[str], str] | None = None,
    ) -> None:
        """``named`` turns a valid ``id`` into the entry's name, so that even an error about
        a missing key says which entry (not just which list index) is wrong."""
        self.source = source
        self.where = where
        if not isinstance(raw, dict):
            self.fail(f"must be a mapping, got {type(raw).__name__}")
        self.raw: dict[object, object] = raw
        entry_id = raw.get("id")
        if named is not None and isinstance(entry_id, str) and ID_RE.fullmatch(entry_id):
            self.where = named(entry_id)
        missing = [k for k in required if k not in raw]
        if missing:
            self.fail(f"missing {', '.join(missing)}")
        unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
        if unknown:
            self.fail(f"unknown key(s) {', '.join(unknown)} (a typo?)")

    def fail(self, problem: str) -> NoReturn:
        where = f" {self.where}:" if self.where else ""
        raise CatalogueError(f"{self.source}:{where} {problem}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def text(self, key: str, *, empty_ok: bool = False) -> str:
        value = self.raw[key]
        if not isinstance(value, str) or (not empty_ok and not value.strip()):
            self.fail(f"{key} must be a non-empty string, got {value!r}")
        return value

    def ident(self, key: str = "id") -> str:
        value = self.raw[key]
        if not isinstance(value, str) or not ID_RE.fullmatch(value):
            self.fail(f"{key} {value!r} must be snake_case ASCII matching {ID_RE.pattern}")
        return value

    def number(self, key: str) -> float:
        value = self.raw[key]
        # bool is an int subclass; YAML turns yes/no/on/off into bools.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            self.fail(f"{key} must be finite, got {value!r}")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.raw[key]
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false, got {value!r}")
        return value

    def items(self, key: str) -> list[object]:
        value = self.raw[key]
        if not isinstance(value, list) or not value:
            self.fail(f"{key} must be a non-empty list, got {value!r}")
        return value

    def numbers(self, key: str, count: int) -> tuple[float, ...]:
        value = self.raw[key]
        numbers = [
            float(v)
            for v in (value if isinstance(value, list) else [])
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if not isinstance(value, list) or len(value) != count or len(numbers) != count:
            self.fail(f"{key} must be a list of {count} finite numbers, got {value!r}")
        return tuple(numbers)


# --- the catalogue's own rules --------------------------------------------------------------


def _parse_catalogue(raw: object, source: str) -> Catalogue:
    top = Entry(source, "", raw, required=("types",), optional=("version",))
    if top.has("version") and top.raw["version"] != 1:
        top.fail(f"version {top.raw['version']!r} is not supported (expected 1)")
    types: dict[str, SensorType] = {}
    for index, item in enumerate(top.items("types")):
        sensor_type = _parse_type(item, source, f"types[{index}]")
        if sensor_type.id in types:
            raise CatalogueError(f"{source}: type {sensor_type.id!r}: duplicate id")
        types[sensor_type.id] = sensor_type
    return Catalogue(types=MappingProxyType(types))


def _parse_type(raw: object, source: str, where: str) -> SensorType:
    entry = Entry(
        source,
        where,
        raw,
        required=("id", "label_en", "label_zh", "interval_s", "placement", "quantities"),
        optional=("codec",),
        named=lambda type_id: f"type {type_id!r}",
    )
    type_id = entry.ident()
    interval_s = entry.number("interval_s")
    if interval_s <= 0:
        entry.fail(f"interval_s must be > 0, got {interval_s:g}")
    placement = entry.text("placement")
    if placement not in PLACEMENTS:
        entry.fail(f"placement {placement!r} must be one of {', '.join(sorted(PLACEMENTS))}")
    quantities: dict[str, Quantity] = {}
    for index, item in enumerate(entry.items("quantities")):
        quantity = _parse_quantity(item, source, entry.where, index)
        if quantity.id in quantities:
            entry.fail(f"quantity {quantity.id!r}: duplicate id")
        quantities[quantity.id] = quantity
    return SensorType(
        id=type_id,
        label=entry.text("label_en"),
        label_zh=entry.text("label_zh"),
        interval_s=interval_s,
        placement=placement,
        quantities=MappingProxyType(quantities),
        codec=parse_codec(entry.raw["codec"], entry.fail) if entry.has("codec") else None,
    )


def _parse_quantity(raw: object, source: str, parent: str, index: int) -> Quantity:
    entry = Entry(
        source,
        f"{parent}, quantities[{index}]",
        raw,
        required=("id", "label_en", "unit", "kind"),
        optional=("min", "max", "typical", "allowed", "senml_unit"),
        named=lambda quantity_id: f"{parent}, quantity {quantity_id!r}",
    )
    quantity_id = entry.ident()
    if quantity_id in RESERVED_FIELD_IDS:
        entry.fail(f"id {quantity_id!r} is reserved ({', '.join(sorted(RESERVED_FIELD_IDS))})")
    raw_kind = entry.raw["kind"]
    kind = _KINDS.get(raw_kind) if isinstance(raw_kind, str) else None
    if kind is None:
        entry.fail(f"kind {raw_kind!r} must be one of {', '.join(QUANTITY_KINDS)}")
    numeric = kind in _NUMERIC
    unit = entry.text("unit", empty_ok=not numeric)
    label = entry.text("label_en")

    if not numeric:
        extra = [k for k in ("min", "max", "typical") if entry.has(k)]
        if extra:
            entry.fail(f"{', '.join(extra)} make no sense for kind {kind}")
        allowed = _parse_allowed(entry) if kind == "string" else None
        if kind != "string" and entry.has("allowed"):
            entry.fail(f"allowed is for kind string only, not {kind}")
        if entry.has("senml_unit"):
            entry.fail(f"senml_unit makes no sense for kind {kind}")
        return Quantity(quantity_id, label, unit, kind, None, None, None, allowed)

    if entry.has("allowed"):
        entry.fail(f"allowed is for kind string only, not {kind}")
    missing = [k for k in ("min", "max", "typical") if not entry.has(k)]
    if missing:
        entry.fail(f"missing {', '.join(missing)} (required for kind {kind})")
    low, high = entry.number("min"), entry.number("max")
    if not low < high:
        entry.fail(f"min ({low:g}) must be < max ({high:g})")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        entry.fail(f"min/max of an int quantity must be whole numbers, got {low:g}/{high:g}")
    typ_lo, typ_hi = entry.numbers("typical", 2)
    if not typ_lo <= typ_hi:
        entry.fail(f"typical [{typ_lo:g}, {typ_hi:g}] is reversed")
    if typ_lo < low or typ_hi > high:
        entry.fail(f"typical [{typ_lo:g}, {typ_hi:g}] must lie within min/max [{low:g}, {high:g}]")
    senml_unit = _senml_unit(entry, unit)
    return Quantity(quantity_id, label, unit, kind, low, high, (typ_lo, typ_hi), None, senml_unit)


#: The SenML name of each display unit that has exactly one; a quantity whose display unit
#: is ambiguous (``%``: relative humidity or a fill ratio) names it with ``senml_unit``.
DISPLAY_TO_SENML: Mapping[str, str] = MappingProxyType(
    {
        "µg/m³": "ug/m3", "mg/m³": "mg/m3", "°C": "Cel", "%": "/100", "hPa": "hPa",
        "m/s": "m/s", "mm/h": "mm/h", "km/h": "km/h", "mm/s": "mm/s", "cm": "cm", "m": "m",
        "W": "W", "°": "deg", "veh": "count", "dB(A)": "dB", "mg/L": "mg/l", "pH": "pH",
        "NTU": "NTU", "MPa": "MPa",
    }
)  # fmt: skip


def _senml_unit(entry: Entry, display_unit: str) -> str | None:
    if not entry.has("senml_unit"):
        return DISPLAY_TO_SENML.get(display_unit)
    name = entry.text("senml_unit")
    if name not in UNITS:
        entry.fail(f"senml_unit {name!r} is not a SenML unit (sensornet/senml_units.py)")
    return name


def _parse_allowed(entry: Entry) -> tuple[str, ...] | None:
    if not entry.has("allowed"):
        return None
    values = entry.items("allowed")
    if not all(isinstance(v, str) and v for v in values):
        entry.fail(f"allowed must be non-empty strings, got {values!r}")
    if len(set(values)) != len(values):
        entry.fail(f"allowed has duplicates: {values!r}")
    return tuple(str(v) for v in values)
