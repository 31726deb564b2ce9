"""Line protocol escaping, proven against a real InfluxDB with hypothesis."""

from __future__ import annotations

import itertools
import math

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensornet.errors import LineProtocolError
from sensornet.lineprotocol import encode_field_value, encode_lines, encode_point
from wiring.services import InfluxDB

HOSTILE = ["a,b", "a b", "a=b", 'a"b', "a\nb", "a\\b", "\\", '"', ",=", " lead", "trail ", "x\r"]
_counter = itertools.count()


def test_escapes_specials_in_each_position() -> None:
    line = encode_point("air quality,x", {"sensor id": "A,B=C D"}, {"f=1": 'say "hi"'}, 5)
    assert line == r'air\ quality\,x,sensor\ id=A\,B\=C\ D f\=1="say \"hi\"" 5'


def test_types_are_encoded_as_influx_types() -> None:
    assert encode_field_value("b", True) == "true"
    assert encode_field_value("i", 3) == "3i"
    assert encode_field_value("f", 3.0) == "3.0"
    assert encode_field_value("f", 1e-7) == "1e-7"  # as orjson writes it; read back exactly


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    with pytest.raises(LineProtocolError, match="finite"):
        encode_field_value("x", bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\\b", "", "x\r"])
def test_unrepresentable_tag_values_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        encode_point("m", {"t": bad}, {"f": 1.0}, 1)


def test_points_without_fields_and_comment_measurements_are_refused() -> None:
    with pytest.raises(LineProtocolError):
        encode_point("m", {}, {}, 1)
    with pytest.raises(LineProtocolError):
        encode_point("#m", {}, {"f": 1.0}, 1)


def _query(influxd: InfluxDB, db: str, q: str) -> list[dict[str, object]]:
    r = httpx.get(f"http://127.0.0.1:{influxd.port}/query", params={"db": db, "q": q})
    r.raise_for_status()
    return r.json()["results"][0].get("series", [])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def roundtrip_db(influxd: InfluxDB) -> str:
    httpx.post(f"http://127.0.0.1:{influxd.port}/query", data={"q": 'CREATE DATABASE "lp_rt"'})
    return "lp_rt"


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=30)


def _write(influxd: InfluxDB, db: str, body: bytes) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{influxd.port}/write", params={"db": db}, content=body)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tag_value=st.one_of(text, st.sampled_from(HOSTILE)),
    string_value=st.one_of(text, st.sampled_from(HOSTILE)),
    field_key=st.one_of(text, st.sampled_from([*HOSTILE, "time", "tag", "n"])),
)
def test_roundtrip_through_real_influxdb(
    influxd: InfluxDB, roundtrip_db: str, tag_value: str, string_value: str, field_key: str
) -> None:
    """Whatever the strings, what InfluxDB stores is exactly one point with exactly the tag
    and fields we meant, or the encoder refused before anything was written."""
    measurement = f"rt{next(_counter)}"
    try:
        line = encode_point(
            measurement, {"tag": tag_value}, {"n": 1.5, field_key: string_value}, 1_000_000_000
        )
    except LineProtocolError:
        return
    assert "\n" not in line.replace('\\"', "").split('"', 1)[0]  # no newline before strings
    response = _write(influxd, roundtrip_db, encode_lines([line]))
    assert response.status_code == 204, response.text
    series = _query(influxd, roundtrip_db, f'SELECT * FROM "{measurement}"')
    assert len(series) == 1
    columns, values = series[0]["columns"], series[0]["values"]  # type: ignore[index]
    assert len(values) == 1
    row = dict(zip(columns, values[0], strict=True))
    assert set(row) == {"time", "tag", "n", field_key}
    assert row["tag"] == tag_value
    assert row[field_key] == string_value


@settings(max_examples=60, deadline=None)
@given(name=st.one_of(text, st.sampled_from(HOSTILE)))
def test_hostile_measurement_names_stay_one_measurement(influxd: InfluxDB, name: str) -> None:
    db = f"lp_m{next(_counter)}"
    httpx.post(f"http://127.0.0.1:{influxd.port}/query", data={"q": f'CREATE DATABASE "{db}"'})
    try:
        line = encode_point(name, {"t": "v"}, {"f": 1.0}, 1)
    except LineProtocolError:
        return
    assert _write(influxd, db, encode_lines([line])).status_code == 204
    series = _query(influxd, db, "SHOW MEASUREMENTS")
    names = [v[0] for v in series[0]["values"]]  # type: ignore[index]
    assert names == [name]
    httpx.post(f"http://127.0.0.1:{influxd.port}/query", data={"q": f'DROP DATABASE "{db}"'})


def test_many_lines_write_as_many_points(influxd: InfluxDB, roundtrip_db: str) -> None:
    lines = [encode_point("multi", {"s": f"s{i}"}, {"v": float(i)}, i + 1) for i in range(100)]
    assert _write(influxd, roundtrip_db, encode_lines(lines)).status_code == 204
    series = _query(influxd, roundtrip_db, 'SELECT count("v") FROM "multi"')
    assert series[0]["values"][0][1] == 100  # type: ignore[index]
