"""``api.answer_rows`` on real InfluxDB answers: whenever it gives CSV lines or JSON readings,
they are exactly what decoding the answer and writing it again gives (``csv.writer``; a
dict per row through orjson); and it does give them for the usual answer, so the export
and ``/series`` really take the short way."""

from __future__ import annotations

import csv
import io
import uuid

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.answer_rows import csv_lines, json_readings
from sensornet.influx import InfluxClient, first_series
from sensornet.lineprotocol import encode_lines, encode_point

Value = float | int | bool | str | None
FIELDS = ["f", "i", "b", "s"]


async def _answer(influx: InfluxClient, rows: list[dict[str, Value]], fields: list[str]) -> bytes:
    case = uuid.uuid4().hex
    lines = [
        encode_point("m", {"case": case}, {k: v for k, v in row.items() if v is not None}, t + 1)
        for t, row in enumerate(rows)
    ]
    await influx.write(encode_lines(lines))
    select = ", ".join(f'"{f}"' for f in fields)
    q = f'SELECT {select} FROM "m" WHERE "case" = $case ORDER BY time ASC'
    return await influx.query_body(q, {"case": case}, epoch="")


def _written(body: bytes) -> bytes:
    """The reference: decode, then csv.writer (what the export did for every answer)."""
    series = first_series(body)
    out = io.StringIO()
    csv.writer(out).writerows(series[0]["values"] if series else [])
    return out.getvalue().encode()


def _dumped(body: bytes, fields: list[str]) -> bytes:
    """The reference: decode, a dict per row without nulls, orjson (what /series did)."""
    series = first_series(body)
    readings = [
        {
            "time": v[0],
            "values": {f: x for f, x in zip(fields, v[1:], strict=True) if x is not None},
        }
        for v in (series[0]["values"] if series else [])
    ]
    return orjson.dumps(readings)


async def _check(
    influx: InfluxClient, rows: list[dict[str, Value]], fields: list[str]
) -> tuple[bool, bool]:
    """Compares both ways for CSV and JSON; says which took the short way."""
    body = await _answer(influx, rows, fields)
    lines = csv_lines(body, fields)
    if lines is not None:
        assert lines == _written(body), body
    readings = json_readings(body, fields)
    if readings is not None:
        text, count, last = readings
        assert b"[" + text + b"]" == _dumped(body, fields), body
        values = first_series(body)[0]["values"]
        assert (count, last) == (len(values), values[-1][0])
    return lines is not None, readings is not None


async def test_the_usual_answer_takes_the_short_way(influx: InfluxClient) -> None:
    rows: list[dict[str, Value]] = [
        {"f": 12.5, "i": 3, "b": True},
        {"f": 0.1, "i": -7, "b": False},
        {"f": 0.0, "i": 0},  # b missing: null
        {"f": 123456.789, "b": True},
        {"f": 0.0001, "i": 2**40},
        {"f": -3.25, "i": 1, "b": False},
        {"f": 1e15 + 0.5},
        {"f": 2.0**60},  # integral: InfluxDB writes it without a fraction
    ]  # and the times (1970-01-01T00:00:00.000000001Z...) have "0.0000" in them
    assert await _check(influx, rows, ["f", "i", "b"]) == (True, False)  # nulls: not JSON
    full = [r | {"i": 1, "b": True} for r in rows]
    assert await _check(influx, full, ["f", "i", "b"]) == (True, True)


async def test_values_read_back_differently_take_the_long_way(influx: InfluxClient) -> None:
    # an exponent; -0 (decoded as 0); more than 64 bits (decoded as a float: 1e+20)
    for row in ({"f": 1e-7}, {"f": 1e22}, {"f": -0.0}, {"f": 1e20}):
        assert await _check(influx, [{"f": 1.0}, row], ["f"]) == (False, False), row
    # a string value (the only string may be the time)
    rows: list[dict[str, Value]] = [{"f": 1.0, "s": "x"}, {"f": 1.5, "s": "a],[b"}]
    assert await _check(influx, rows, ["f", "s"]) == (False, False)
    # 0.00005: csv.writer writes 5e-05, orjson writes 0.00005 as InfluxDB does
    assert await _check(influx, [{"f": 0.00005}], ["f"]) == (False, True)


async def test_no_rows_and_other_columns_take_the_long_way(influx: InfluxClient) -> None:
    body = await _answer(influx, [{"f": 1.0}], ["f"])
    assert csv_lines(body, ["g"]) is None  # columns other than expected
    assert csv_lines(b'{"results":[{"statement_id":0}]}\n', ["f"]) is None
    error = b'{"results":[{"statement_id":0,"error":"boom"}]}\n'
    assert csv_lines(error, ["f"]) is None


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "f": st.floats(allow_nan=False, allow_infinity=False),
                "i": st.integers(-(2**63) + 1, 2**63 - 1),
                "b": st.booleans(),
                "s": st.text(
                    st.characters(
                        codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\\"
                    ),
                    max_size=8,
                ),
            },
        ).filter(bool),
        min_size=1,
        max_size=12,
    )
)
async def test_any_answer_the_short_way_gives_is_exact(
    influx: InfluxClient, rows: list[dict[str, Value]]
) -> None:
    await _check(influx, rows, FIELDS)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "f": st.integers(-(10**9), 10**9).map(lambda n: n / 100),
                "i": st.integers(-(2**40), 2**40),
                "b": st.booleans(),
            },
        ),
        min_size=1,
        max_size=30,
    )
)
async def test_plain_readings_always_take_the_short_way(
    influx: InfluxClient, rows: list[dict[str, Value]]
) -> None:
    assert await _check(influx, rows, ["f", "i", "b"]) == (True, True)
