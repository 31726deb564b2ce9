"""``api.csv_rows`` on real InfluxDB answers: whenever it gives lines, they are exactly what
decoding the answer and writing it with ``csv.writer`` gives; and it does give them for the
usual answer, so the export really takes the short way."""

from __future__ import annotations

import csv
import io
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.csv_rows import csv_lines
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


def _written(body: bytes, fields: list[str]) -> bytes:
    """The reference: decode, then csv.writer (what the export did for every answer)."""
    series = first_series(body)
    out = io.StringIO()
    csv.writer(out).writerows(series[0]["values"] if series else [])
    return out.getvalue().encode()


async def _same(influx: InfluxClient, rows: list[dict[str, Value]], fields: list[str]) -> bool:
    """Compares both ways; True when the short way was taken."""
    body = await _answer(influx, rows, fields)
    lines = csv_lines(body, fields)
    if lines is not None:
        assert lines == _written(body, fields), body
    return lines is not None


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
    assert await _same(influx, rows, ["f", "i", "b"])


async def test_values_python_writes_differently_take_the_long_way(influx: InfluxClient) -> None:
    for row in (
        {"f": 0.00005},  # 5e-05 in Python, 0.00005 from InfluxDB
        {"f": 1e-7},  # an exponent
        {"f": 1e22},
        {"f": -0.0},
        {"f": 1.5, "s": "a],[b"},  # a string value
    ):
        assert not await _same(influx, [{"f": 1.0}, row], ["f", "s"]), row


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
    await _same(influx, rows, FIELDS)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.fixed_dictionaries(
            {"f": st.integers(-(10**9), 10**9).map(lambda n: n / 100)},
            optional={"i": st.integers(-(2**40), 2**40), "b": st.booleans()},
        ),
        min_size=1,
        max_size=30,
    )
)
async def test_plain_readings_always_take_the_short_way(
    influx: InfluxClient, rows: list[dict[str, Value]]
) -> None:
    assert await _same(influx, rows, ["f", "i", "b"])
