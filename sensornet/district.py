"""The district the deployment serves, as data (``sensornet/data/districts/<id>.yaml``).

Nothing in the code may assume Jing'an: another district is another YAML file. Registry tags,
dashboards and the simulator all take subdistrict ids from here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from sensornet.catalogue import ID_RE, Entry, read_yaml
from sensornet.errors import CatalogueError, UnknownSubdistrict

__all__ = ["District", "Subdistrict", "load_district"]


@dataclass(frozen=True, slots=True)
class Subdistrict:
    """A subdistrict or town; the centroid and radius place simulated sensors, not a boundary."""

    id: str
    name_zh: str
    name_en: str
    lat: float
    lon: float
    radius_m: float
    low_lying: bool  # prone to waterlogging
    river: bool  # on a river (in Jing'an: Suzhou Creek)


@dataclass(frozen=True)
class District:
    """A district and its subdistricts, ordered as in the file."""

    id: str
    name_en: str
    name_zh: str
    city: str
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat (WGS84)
    subdistricts: Mapping[str, Subdistrict]
    area_km2: float | None = None

    def contains(self, lat: float, lon: float, margin_deg: float = 0.01) -> bool:
        """Inside the district's bounding box, with ``margin_deg`` (about 1 km) for
        positions taken on the boundary."""
        min_lon, min_lat, max_lon, max_lat = self.bbox
        return (
            min_lat - margin_deg <= lat <= max_lat + margin_deg
            and min_lon - margin_deg <= lon <= max_lon + margin_deg
        )

    def outside(self, lat: float, lon: float) -> str | None:
        """Why a position cannot be in this district, or None when it can."""
        if self.contains(lat, lon):
            return None
        min_lon, min_lat, max_lon, max_lat = self.bbox
        return (
            f"position lat={lat:g}, lon={lon:g} lies outside {self.name_en}"
            f" (lat {min_lat:g}..{max_lat:g}, lon {min_lon:g}..{max_lon:g})"
        )

    def get(self, subdistrict_id: str) -> Subdistrict:
        try:
            return self.subdistricts[subdistrict_id]
        except KeyError:
            known = ", ".join(self.subdistricts)
            raise UnknownSubdistrict(
                f"unknown subdistrict {subdistrict_id!r} in {self.id}; known: {known}"
            ) from None


def load_district(district_id: str = "jingan", path: Path | None = None) -> District:
    """Load and check a district: the packaged ``<district_id>.yaml`` (read only once) or
    ``path``, whose ``id`` must then equal ``district_id`` so a wrong file cannot slip in."""
    if path is None:
        return _packaged_district(district_id)
    district = _parse_district(read_yaml(path), str(path))
    if district.id != district_id:
        raise CatalogueError(
            f"{path}: describes district {district.id!r}, not {district_id!r}; "
            f"pass district_id={district.id!r}"
        )
    return district


@functools.cache
def _packaged_district(district_id: str) -> District:
    folder = resources.files("sensornet") / "data" / "districts"
    # The id becomes a file name: refuse anything that is not a plain slug.
    resource = folder / f"{district_id}.yaml"
    if not ID_RE.fullmatch(district_id) or not resource.is_file():
        packaged = sorted(
            p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
        )
        raise CatalogueError(
            f"no packaged district {district_id!r}; packaged: {', '.join(packaged) or 'none'}"
        )
    district = _parse_district(read_yaml(resource), str(resource))
    if district.id != district_id:
        raise CatalogueError(f"{resource}: id {district.id!r} does not match the file name")
    return district


def _parse_district(raw: object, source: str) -> District:
    entry = Entry(
        source,
        "",
        raw,
        required=("id", "name_en", "name_zh", "city", "bbox", "subdistricts"),
        optional=("area_km2",),
        named=lambda district_id: f"district {district_id!r}",
    )
    district_id = entry.ident()
    area_km2 = entry.number("area_km2") if entry.has("area_km2") else None
    if area_km2 is not None and area_km2 <= 0:
        entry.fail(f"area_km2 must be > 0, got {area_km2:g}")
    min_lon, min_lat, max_lon, max_lat = entry.numbers("bbox", 4)
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        entry.fail(
            "bbox must be [min_lon, min_lat, max_lon, max_lat] with min < max, "
            f"got {[min_lon, min_lat, max_lon, max_lat]}"
        )
    bbox = (min_lon, min_lat, max_lon, max_lat)
    subdistricts: dict[str, Subdistrict] = {}
    for index, item in enumerate(entry.items("subdistricts")):
        sub = _parse_subdistrict(item, source, entry.where, index, bbox)
        if sub.id in subdistricts:
            entry.fail(f"subdistrict {sub.id!r}: duplicate id")
        subdistricts[sub.id] = sub
    return District(
        id=district_id,
        name_en=entry.text("name_en"),
        name_zh=entry.text("name_zh"),
        city=entry.text("city"),
        bbox=bbox,
        subdistricts=MappingProxyType(subdistricts),
        area_km2=area_km2,
    )


def _parse_subdistrict(
    raw: object, source: str, parent: str, index: int, bbox: tuple[float, float, float, float]
) -> Subdistrict:
    entry = Entry(
        source,
        f"{parent}, subdistricts[{index}]",
        raw,
        required=("id", "name_zh", "name_en", "lat", "lon", "radius_m", "low_lying", "river"),
        named=lambda sub_id: f"{parent}, subdistrict {sub_id!r}",
    )
    sub_id = entry.ident()
    lat, lon, radius_m = entry.number("lat"), entry.number("lon"), entry.number("radius_m")
    min_lon, min_lat, max_lon, max_lat = bbox
    if not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat):
        entry.fail(f"centroid ({lat:g}, {lon:g}) lies outside the district bbox {list(bbox)}")
    if radius_m <= 0:
        entry.fail(f"radius_m must be > 0, got {radius_m:g}")
    return Subdistrict(
        id=sub_id,
        name_zh=entry.text("name_zh"),
        name_en=entry.text("name_en"),
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        low_lying=entry.flag("low_lying"),
        river=entry.flag("river"),
    )
