"""Payload shapes and timestamp normalisation (pure functions)."""

from __future__ import annotations

import orjson
import pytest

from sensornet.codec import decode_payload
from sensornet.errors import PayloadError
from sensornet.timestamps import to_ns

NS = 1_732_500_000 * 10**9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_732_500_000, NS),
        (1_732_500_000.5, NS + 500_000_000),
        (1_732_500_000_000, NS),
        (1_732_500_000_000_000, NS),
        (NS, NS),
        ("2024-11-25T02:00:00Z", NS),
        ("2024-11-25T10:00:00+08:00", NS),
        ("2024-11-25T02:00:00.123456789Z", NS + 123_456_789),
    ],
)
def test_timestamps_normalise_to_ns(value: object, expected: int) -> None:
    assert to_ns(value) == expected


@pytest.mark.parametrize("bad", ["2024-11-25T02:00:00", "yesterday", True, -5, float("nan"), [1]])
def test_bad_timestamps_are_refused(bad: object) -> None:
    with pytest.raises(PayloadError) as info:
        to_ns(bad)
    assert info.value.reason == "bad_timestamp"


def test_flat_object() -> None:
    d = decode_payload(b'{"ts": 1732500000, "seq": 4, "pm25": 12.5, "pm10": 30}')
    assert len(d.readings) == 1 and not d.rejects
    r = d.readings[0]
    assert (r.ts_ns, r.seq, r.values) == (NS, 4, {"pm25": 12.5, "pm10": 30})


def test_ts_and_values_and_missing_ts() -> None:
    r = decode_payload(b'{"values": {"laeq": 61.0}}').readings[0]
    assert r.ts_ns is None and r.values == {"laeq": 61.0}


def test_array_keeps_good_items_and_reports_bad_ones() -> None:
    d = decode_payload(orjson.dumps([{"ts": 1732500000, "a": 1}, {"ts": "never", "a": 2}, 7]))
    assert [r.values for r in d.readings] == [{"a": 1}]
    assert [(x.index, x.error.reason) for x in d.rejects] == [
        (1, "bad_timestamp"),
        (2, "bad_shape"),
    ]


def test_gateway_pack() -> None:
    d = decode_payload(
        orjson.dumps(
            {
                "gw": "GW-1",
                "ts": 1732500000,
                "readings": [
                    {"sensor": "AQ-1", "seq": 1, "pm25": 3.0},
                    {"sensor": "NS-2", "ts": 1732500001, "values": {"laeq": 55.5}},
                    {"pm25": 1.0},
                ],
            }
        )
    )
    assert [(r.sensor_id, r.ts_ns) for r in d.readings] == [("AQ-1", NS), ("NS-2", NS + 10**9)]
    assert d.rejects[0].error.reason == "bad_pack"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'{"pm25": 1, "x": "\xff"}', "invalid_utf8"),
        (b"[]", "no_values"),
        (b'"text"', "bad_shape"),
        (b'{"ts": 1}', "no_values"),
        (b'{"values": 3}', "bad_shape"),
        (b'{"a": {"b": {"c": {"d": {"e": 1}}}}}', "too_deep"),
        (b'{"seq": -1, "a": 1}', "bad_seq"),
        (b'{"sensor": "X", "a": 1}', "bad_shape"),
        (b"x" * 300_000, "oversize"),
        (b'{"pm25": 1, "pm25": 2}', "duplicate_key"),
        (b"[" * 1000 + b"]" * 1000, "too_deep"),
        (b'{"ts": "2024-11-25T02:00:00Z", "values": {"a": 1, "a": 2}}', "duplicate_key"),
    ],
)
def test_malformed_payloads_raise_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(payload)
    assert info.value.reason == reason
