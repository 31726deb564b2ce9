"""The packaged catalogue and district load and make sense; malformed files fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensornet.catalogue import ID_RE, PLACEMENTS, load_catalogue
from sensornet.district import load_district
from sensornet.errors import (
    CatalogueError,
    SensornetError,
    UnknownSensorType,
    UnknownSubdistrict,
)

JINGAN_ZH = [
    "静安寺", "曹家渡", "江宁路", "石门二路", "南京西路", "天目西路", "北站",
    "宝山路", "共和新路", "大宁路", "彭浦新村", "临汾路", "芷江西路", "彭浦镇",
]  # fmt: skip

EXPECTED_TYPES = {
    "air_quality": {"pm25", "pm10", "no2", "o3", "co"},
    "noise": {"laeq"},
    "waterlogging": {"depth"},
    "manhole_cover": {"tilt", "open"},
    "traffic_flow": {"count", "mean_speed"},
    "street_light": {"power", "on", "mode"},
    "waste_bin": {"fill"},
    "structural": {"tilt", "vibration"},
    "weather": {"temperature", "humidity", "rain", "wind_speed", "pressure"},
    "water_quality": {"do", "ph", "turbidity", "nh3n"},
}

GOOD_TYPE = """\
types:
  - id: noise
    label_en: Noise
    label_zh: 噪声
    interval_s: 60
    placement: street
    quantities:
      - {id: laeq, label_en: LAeq, unit: "dB(A)", kind: float, min: 20, max: 140,
         typical: [50, 75]}
"""


def write(tmp_path: Path, text: str, name: str = "catalogue.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- packaged catalogue ----------------------------------------------------------------------


def test_packaged_catalogue_loads_and_is_cached() -> None:
    catalogue = load_catalogue()
    assert load_catalogue() is catalogue
    assert len(catalogue.types) >= 12
    for type_id, fields in EXPECTED_TYPES.items():
        assert set(catalogue.get(type_id).quantities) >= fields, type_id


def test_every_type_is_well_formed() -> None:
    for type_id, sensor_type in load_catalogue().types.items():
        assert ID_RE.fullmatch(type_id)
        assert sensor_type.measurement == type_id
        assert sensor_type.label and sensor_type.label_zh
        assert sensor_type.interval_s >= 5
        assert sensor_type.placement in PLACEMENTS
        assert sensor_type.quantities


def test_every_quantity_has_unit_and_ranges() -> None:
    for sensor_type in load_catalogue().types.values():
        for qid, q in sensor_type.quantities.items():
            assert q.id == qid and ID_RE.fullmatch(qid)
            assert isinstance(q.unit, str)
            if q.kind in ("float", "int"):
                assert q.unit, (sensor_type.id, qid)
                assert q.min is not None and q.max is not None and q.typical is not None
                assert q.min < q.max
                assert q.min <= q.typical[0] <= q.typical[1] <= q.max
                assert q.allowed is None
            else:
                assert q.min is None and q.max is None and q.typical is None
                assert q.allowed is None or q.kind == "string"


def test_street_light_mode_is_a_closed_string_set() -> None:
    mode = load_catalogue().get("street_light").quantities["mode"]
    assert mode.kind == "string"
    assert mode.allowed is not None and {"auto", "manual"} <= set(mode.allowed)


def test_quantities_keep_file_order() -> None:
    air = load_catalogue().get("air_quality")
    assert list(air.quantities) == ["pm25", "pm10", "no2", "o3", "co"]


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSensorType, match="air_quality") as info:
        load_catalogue().get("tricorder")
    assert "tricorder" in str(info.value)
    assert isinstance(info.value, SensornetError)


# --- malformed catalogues --------------------------------------------------------------------


def test_a_good_minimal_file_loads(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, GOOD_TYPE))
    laeq = catalogue.get("noise").quantities["laeq"]
    assert (laeq.min, laeq.max, laeq.typical) == (20.0, 140.0, (50.0, 75.0))


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("min: 20, max: 140", "min: 140, max: 20", r"min \(140\) must be < max \(20\)"),
        ("id: laeq", "id: LAeq", "snake_case"),
        ("id: noise", "id: 2noise", "snake_case"),
        ('unit: "dB(A)", ', "", "quantity 'laeq': missing unit"),
        ("typical: [50, 75]", "typical: [50, 175]", "within min/max"),
        ("typical: [50, 75]", "typical: [75, 50]", "reversed"),
        ("interval_s: 60", "interval_s: 0", "interval_s must be > 0"),
        ("placement: street", "placement: sky", "placement 'sky'"),
        ("kind: float", "kind: double", "kind 'double'"),
        ("    label_zh: 噪声\n", "", "type 'noise': missing label_zh"),
        ("min: 20", "mni: 20", "unknown key"),
        ("id: laeq", "id: ts", "reserved"),
        ("max: 140", "max: .nan", "finite"),
        ("kind: float, min: 20, max: 140,\n         typical: [50, 75]", "kind: bool, min: 0",
         "make no sense"),
    ],
)  # fmt: skip
def test_malformed_catalogue_names_file_entry_and_problem(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    assert old in GOOD_TYPE
    path = write(tmp_path, GOOD_TYPE.replace(old, new))
    with pytest.raises(CatalogueError, match=problem) as info:
        load_catalogue(path)
    message = str(info.value)
    assert str(path) in message
    assert "type " in message or "types[0]" in message


def test_duplicate_type_id_is_refused(tmp_path: Path) -> None:
    text = GOOD_TYPE + GOOD_TYPE.split("\n", 1)[1]
    with pytest.raises(CatalogueError, match="duplicate"):
        load_catalogue(write(tmp_path, text))


@pytest.mark.parametrize(
    "text", ["types: [\n", "", "types: []\n", "[1, 2]\n", "types:\n  - just a string\n"]
)
def test_broken_files_raise_catalogue_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(CatalogueError):
        load_catalogue(write(tmp_path, text))


def test_missing_file_raises_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "nope.yaml")


# --- district --------------------------------------------------------------------------------


def test_jingan_has_its_fourteen_subdistricts() -> None:
    district = load_district()
    assert load_district("jingan") is district
    assert (district.id, district.name_zh, district.city) == ("jingan", "静安区", "Shanghai")
    assert sorted(s.name_zh for s in district.subdistricts.values()) == sorted(JINGAN_ZH)
    assert district.get("jingansi").name_zh == "静安寺"
    assert any(s.river for s in district.subdistricts.values())
    assert any(s.low_lying for s in district.subdistricts.values())


def test_every_centroid_lies_in_the_bbox() -> None:
    district = load_district()
    min_lon, min_lat, max_lon, max_lat = district.bbox
    for sub in district.subdistricts.values():
        assert ID_RE.fullmatch(sub.id)
        assert min_lon <= sub.lon <= max_lon and min_lat <= sub.lat <= max_lat, sub.id
        assert 100 <= sub.radius_m <= 5000


def test_unknown_subdistrict_and_district() -> None:
    with pytest.raises(UnknownSubdistrict, match="jingansi"):
        load_district().get("lujiazui")
    with pytest.raises(CatalogueError, match="jingan"):
        load_district("atlantis")
    with pytest.raises(CatalogueError):
        load_district("../catalogue")


def test_district_file_is_checked(tmp_path: Path) -> None:
    source = load_district().subdistricts["beizhan"]
    text = f"""\
id: testville
name_en: Testville
name_zh: 测试区
city: Nowhere
bbox: [121.0, 31.0, 121.1, 31.1]
subdistricts:
  - {{id: {source.id}, name_zh: 北站, name_en: Beizhan, lat: {source.lat}, lon: {source.lon},
     radius_m: 700, low_lying: true, river: true}}
"""
    path = write(tmp_path, text, "testville.yaml")
    with pytest.raises(CatalogueError, match="outside the district bbox"):
        load_district("testville", path)
    text = text.replace("121.1, 31.1]", "121.5, 31.5]")
    path = write(tmp_path, text, "testville.yaml")
    assert load_district("testville", path).get("beizhan").river
    with pytest.raises(CatalogueError, match="not 'jingan'"):
        load_district(path=path)
    with pytest.raises(CatalogueError, match="true or false"):
        load_district("testville", write(tmp_path, text.replace("river: true", "river: 1")))
