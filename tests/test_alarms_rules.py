"""The shipped alarm rules load and fit the catalogue; the pure evaluator's semantics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensornet.alarms.evaluate import AlarmState, evaluate, target_level
from sensornet.alarms.rules import Level, load_rules
from sensornet.errors import CatalogueError

S = 10**9
PM25 = (
    Level("good", "info", 35),
    Level("light", "warning", 75),
    Level("moderate", "major", 115),
)


def test_shipped_rules_cover_the_issue() -> None:
    rules = load_rules()
    ids = {r.id for r in rules.rules}
    assert {"pm25_aqi", "waterlogging_depth", "manhole_open", "smoke_alarm", "noise_gb3096"} <= ids
    pm = next(r for r in rules.rules if r.id == "pm25_aqi")
    assert [lv.threshold for lv in pm.thresholds.levels] == [35, 75, 115, 150, 250]
    noise = next(r for r in rules.rules if r.id == "noise_gb3096")
    assert noise.levels_for("jingansi", night=False)[0].threshold == 70
    assert noise.levels_for("jingansi", night=True)[0].threshold == 55
    assert noise.levels_for("pengpuxincun", night=True)[0].threshold == 50


def test_night_uses_local_time() -> None:
    rules = load_rules()
    # 15:00 UTC is 23:00 in Shanghai
    assert rules.is_night(int(datetime(2026, 7, 1, 15, tzinfo=UTC).timestamp()) * S)
    assert not rules.is_night(int(datetime(2026, 7, 1, 4, tzinfo=UTC).timestamp()) * S)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("rules: [{id: a, type: nosuch, quantity: x, op: above, levels: []}]", "not in the cat"),
        (
            "rules: [{id: a, type: smoke, quantity: alarm, op: above,"
            " levels: [{name: x, severity: info, threshold: 1}]}]",
            "does not fit",
        ),
        (
            "rules: [{id: a, type: noise, quantity: laeq, op: above, levels: ["
            "{name: x, severity: info, threshold: 70},"
            " {name: y, severity: major, threshold: 60}]}]",
            "more severe",
        ),
        (
            "rules: [{id: a, type: noise, quantity: laeq, op: above,"
            " levels: [{name: x, severity: info, threshold: 70}], overrides: {mars: {}}}]",
            "unknown subdistrict",
        ),
    ],
)
def test_bad_rules_fail_naming_the_rule(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    with pytest.raises(CatalogueError, match=message):
        load_rules(path)


def _run(
    readings: list[tuple[int, float]], min_duration_s: float = 0, hysteresis: float = 5
) -> list[tuple[str, int | None, int]]:
    state, events = AlarmState(), []
    for t, v in readings:
        state, event = evaluate(state, "above", PM25, hysteresis, min_duration_s, v, t * S)
        if event:
            events.append((event.kind, event.level, t))
    return events


def test_raise_escalate_deescalate_clear() -> None:
    events = _run([(0, 20), (60, 80), (120, 120), (180, 100), (240, 10)])
    assert events == [
        ("raised", 1, 60),
        ("changed", 2, 120),
        ("changed", 1, 180),
        ("cleared", None, 240),
    ]


def test_hysteresis_stops_flapping() -> None:
    # around 75 with hysteresis 5: 74 and 71 keep "light"; 69 drops to "good" (35 still held)
    events = _run([(0, 76), (60, 74), (120, 76), (180, 71), (240, 69)])
    assert events == [("raised", 1, 0), ("changed", 0, 240)]


def test_min_duration_waits_and_resets() -> None:
    # each level must hold 600 s; the dip to 50 restarts level 1's clock, not level 0's
    events = _run(
        [(0, 80), (300, 80), (400, 50), (500, 80), (1000, 80), (1100, 80)],
        min_duration_s=600,
    )
    assert events == [("raised", 0, 1000), ("changed", 1, 1100)]


def test_old_or_repeated_readings_are_ignored() -> None:
    state, event = evaluate(AlarmState(), "above", PM25, 0, 0, 80, 100 * S)
    assert event is not None
    same, again = evaluate(state, "above", PM25, 0, 0, 10, 100 * S)
    assert again is None and same == state


def test_below_and_is_true() -> None:
    levels = (Level("low", "major", 0.14), Level("dry", "critical", 0.05))
    assert target_level("below", levels, 0.2, None, 0.02) is None
    assert target_level("below", levels, 0.13, None, 0.02) == 0
    assert target_level("below", levels, 0.15, 0, 0.02) == 0  # hysteresis keeps it
    assert target_level("below", levels, 0.17, 0, 0.02) is None
    assert target_level("below", levels, 0.01, None, 0.02) == 1
    flag = (Level("open", "critical", None),)
    assert target_level("is_true", flag, True, None, 0) == 0
    assert target_level("is_true", flag, False, 0, 0) is None
