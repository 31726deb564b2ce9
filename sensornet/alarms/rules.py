"""Alarm rules, loaded from YAML and checked against the catalogue and district at load."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from sensornet.catalogue import Catalogue, Entry, load_catalogue, read_yaml
from sensornet.district import District, load_district

Op = Literal["above", "below", "is_true"]
Severity = Literal["info", "warning", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "major", "critical")
_OPS: tuple[Op, ...] = ("above", "below", "is_true")


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    severity: Severity
    threshold: float | None


@dataclass(frozen=True, slots=True)
class Thresholds:
    levels: tuple[Level, ...]
    night: tuple[Level, ...] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    type: str
    quantity: str
    op: Op
    hysteresis: float
    min_duration_s: float
    thresholds: Thresholds
    overrides: Mapping[str, Thresholds]

    def levels_for(self, subdistrict: str, night: bool) -> tuple[Level, ...]:
        t = self.overrides.get(subdistrict, self.thresholds)
        return t.night if night and t.night else t.levels


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    timezone: str
    night_hours: tuple[int, int]

    def for_type(self, type_id: str) -> list[Rule]:
        return [r for r in self.rules if r.type == type_id]

    def is_night(self, t_ns: int) -> bool:
        hour = datetime.fromtimestamp(t_ns / 1e9, UTC).astimezone(ZoneInfo(self.timezone)).hour
        start, end = self.night_hours
        return hour >= start or hour < end if start > end else start <= hour < end


def load_rules(
    path: Path | None = None,
    catalogue: Catalogue | None = None,
    district: District | None = None,
) -> RuleSet:
    if path is None:
        return _packaged()
    return _parse(read_yaml(path), str(path), catalogue or load_catalogue(), district)


@functools.cache
def _packaged() -> RuleSet:
    resource = resources.files("sensornet") / "data" / "alarm_rules.yaml"
    return _parse(read_yaml(resource), str(resource), load_catalogue(), None)


def _parse(raw: object, source: str, catalogue: Catalogue, district: District | None) -> RuleSet:
    district = district or load_district()
    top = Entry(source, "", raw, ("rules",), ("version", "timezone", "night_hours"))
    tz = top.text("timezone") if top.has("timezone") else "UTC"
    night = top.numbers("night_hours", 2) if top.has("night_hours") else (22.0, 6.0)
    rules: list[Rule] = []
    for index, item in enumerate(top.items("rules")):
        rule = _rule(item, source, f"rules[{index}]", catalogue, district)
        if any(r.id == rule.id for r in rules):
            top.fail(f"rule {rule.id!r}: duplicate id")
        rules.append(rule)
    return RuleSet(tuple(rules), tz, (int(night[0]), int(night[1])))


def _rule(raw: object, source: str, where: str, catalogue: Catalogue, district: District) -> Rule:
    e = Entry(
        source,
        where,
        raw,
        ("id", "type", "quantity", "op", "levels"),
        ("hysteresis", "min_duration_s", "night", "overrides"),
        named=lambda i: f"rule {i!r}",
    )
    rule_id, type_id, quantity = e.ident(), e.ident("type"), e.ident("quantity")
    if type_id not in catalogue.types:
        e.fail(f"type {type_id!r} is not in the catalogue")
    q = catalogue.get(type_id).quantities.get(quantity)
    if q is None:
        e.fail(f"quantity {quantity!r} is not a quantity of {type_id}")
    op = e.text("op")
    if op not in _OPS:
        e.fail(f"op {op!r} must be one of {', '.join(_OPS)}")
    if (op == "is_true") != (q.kind == "bool"):
        e.fail(f"op {op} does not fit quantity kind {q.kind}")
    thresholds = _thresholds(e, op)
    overrides: dict[str, Thresholds] = {}
    raw_over = e.raw.get("overrides") or {}
    if not isinstance(raw_over, dict):
        e.fail("overrides must map subdistrict ids to levels")
    for area, spec in raw_over.items():
        if str(area) not in district.subdistricts:
            e.fail(f"override for unknown subdistrict {area!r}")
        sub = Entry(source, f"{e.where}, override {area!r}", spec, (), ("levels", "night"))
        overrides[str(area)] = _thresholds(sub, op, fallback=thresholds)
    return Rule(
        rule_id,
        type_id,
        quantity,
        op,
        e.number("hysteresis") if e.has("hysteresis") else 0.0,
        e.number("min_duration_s") if e.has("min_duration_s") else 0.0,
        thresholds,
        overrides,
    )


def _thresholds(e: Entry, op: str, fallback: Thresholds | None = None) -> Thresholds:
    levels = _levels(e, "levels", op) if e.has("levels") else None
    night = _levels(e, "night", op) if e.has("night") else None
    if levels is None:
        if fallback is None:
            e.fail("missing levels")
        levels = fallback.levels
    return Thresholds(
        levels, night if night is not None else (fallback.night if fallback else None)
    )


def _levels(e: Entry, key: str, op: str) -> tuple[Level, ...]:
    out: list[Level] = []
    for index, item in enumerate(e.items(key)):
        le = Entry(
            e.source, f"{e.where}, {key}[{index}]", item, ("name", "severity"), ("threshold",)
        )
        severity = le.text("severity")
        if severity not in SEVERITIES:
            le.fail(f"severity {severity!r} must be one of {', '.join(SEVERITIES)}")
        threshold = le.number("threshold") if le.has("threshold") else None
        if (threshold is None) != (op == "is_true"):
            le.fail("threshold is required for above/below and meaningless for is_true")
        out.append(Level(le.text("name"), severity, threshold))
    thresholds = [lv.threshold for lv in out if lv.threshold is not None]
    ordered = sorted(thresholds, reverse=(op == "below"))
    if thresholds != ordered or len(set(thresholds)) != len(thresholds):
        e.fail(f"{key}: thresholds must get strictly more severe level by level")
    return tuple(out)
