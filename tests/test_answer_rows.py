"""``api.answer_rows`` on real InfluxDB answers: whenever it gives CSV lines they are
exactly what decoding the answer and writing it again with ``csv.writer`` gives; the
``/series`` rows always decode to InfluxDB's rows in column order, and are InfluxDB's own
text for every one-series answer; the usual answer takes the short way for both."""

from __future__ import annotations

import csv
import io
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.answer_rows import csv_lines, series_rows
from sensornet.errors import InfluxError
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


def _rows_text(body: bytes) -> bytes:
    """The text of InfluxDB's rows in its answer: what /series passes on when it can."""
    return body[body.find(b',"values":[[') + len(b',"values":') : -len(b"}]}]}\n")]


async def _check(
    influx: InfluxClient, rows: list[dict[str, Value]], fields: list[str]
) -> tuple[bool, bool]:
    """Compares both ways for CSV and JSON; says which took the short way."""
    body = await _answer(influx, rows, fields)
    lines = csv_lines(body, fields)
    if lines is not None:
        assert lines == _written(body), body
    text, count, last = series_rows(body, fields)
    values = first_series(body)[0]["values"]
    assert orjson.loads(text) == values, body
    assert (count, last) == (len(values), values[-1][0])
    return lines is not None, text == _rows_text(body)


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
    assert await _check(influx, rows, ["f", "i", "b"]) == (True, True)
    full = [r | {"i": 1, "b": True} for r in rows]
    assert await _check(influx, full, ["f", "i", "b"]) == (True, True)


async def test_values_read_back_differently_take_the_long_way_to_csv(
    influx: InfluxClient,
) -> None:
    # an exponent; -0 (decoded as 0); more than 64 bits (decoded as a float: 1e+20):
    # CSV is written again, JSON passes them on (they decode to the same values)
    for row in ({"f": 1e-7}, {"f": 1e22}, {"f": -0.0}, {"f": 1e20}):
        assert await _check(influx, [{"f": 1.0}, row], ["f"]) == (False, True), row
    # a string value (the only string may be the time), even one that looks like a row end
    rows: list[dict[str, Value]] = [{"f": 1.0, "s": "x"}, {"f": 1.5, "s": 'a]]}]}]} "'}]
    assert await _check(influx, rows, ["f", "s"]) == (False, True)
    # 0.00005: csv.writer writes 5e-05, orjson writes 0.00005 as InfluxDB does
    assert await _check(influx, [{"f": 0.00005}], ["f"]) == (False, True)


async def test_no_rows_and_other_columns_take_the_long_way(influx: InfluxClient) -> None:
    body = await _answer(influx, [{"f": 1.0, "i": 2}], ["f", "i"])
    assert csv_lines(body, ["g"]) is None  # columns other than expected
    # columns in another order, or one InfluxDB did not send: put in order, null
    assert orjson.loads(series_rows(body, ["i", "f"])[0]) == [[body_time(body), 2, 1.0]]
    assert orjson.loads(series_rows(body, ["f", "g"])[0]) == [[body_time(body), 1.0, None]]
    empty = b'{"results":[{"statement_id":0}]}\n'
    assert csv_lines(empty, ["f"]) is None
    assert series_rows(empty, ["f"]) == (b"[]", 0, None)
    error = b'{"results":[{"statement_id":0,"error":"boom"}]}\n'
    assert csv_lines(error, ["f"]) is None
    with pytest.raises(InfluxError, match="boom"):
        series_rows(error, ["f"])
    # two statements: the first one's rows only
    two = body[: -len("]}\n")] + b',{"statement_id":1,"series":[]}]}\n'
    assert orjson.loads(series_rows(two, ["f", "i"])[0]) == [[body_time(body), 1.0, 2]]


def body_time(body: bytes) -> str:
    time: str = first_series(body)[0]["values"][0][0]
    return time


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
