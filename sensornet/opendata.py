"""The open-data catalogue (``sensornet/data/opendata.yaml``), checked against the
catalogue on load; and the per-client token bucket that rate-limits anonymous access."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sensornet.catalogue import Catalogue, Entry, load_catalogue, read_yaml
from sensornet.storage_layout import aggregated


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    title_en: str
    title_zh: str
    description: str
    type: str
    quantities: tuple[str, ...]
    aggregate: str
    step_s: int
    max_days: int
    update_frequency: str


@dataclass(frozen=True)
class OpenDataCatalogue:
    publisher: str
    licence: dict[str, str]
    datasets: dict[str, Dataset]


def load_opendata(
    path: Path | None = None, catalogue: Catalogue | None = None
) -> OpenDataCatalogue:
    if path is None:
        return _packaged()
    return _parse(read_yaml(path), str(path), catalogue or load_catalogue())


@functools.cache
def _packaged() -> OpenDataCatalogue:
    resource = resources.files("sensornet") / "data" / "opendata.yaml"
    return _parse(read_yaml(resource), str(resource), load_catalogue())


def _parse(raw: object, source: str, catalogue: Catalogue) -> OpenDataCatalogue:
    top = Entry(source, "", raw, ("publisher", "licence", "datasets"), ("version",))
    lic = Entry(source, "licence", top.raw["licence"], ("id", "name", "url", "attribution"))
    datasets: dict[str, Dataset] = {}
    keys = ("id", "title_en", "title_zh", "description", "type", "quantities", "aggregate",
            "step_s", "max_days", "update_frequency")  # fmt: skip
    for index, item in enumerate(top.items("datasets")):
        e = Entry(source, f"datasets[{index}]", item, keys, named=lambda i: f"dataset {i!r}")
        type_id = e.ident("type")
        if type_id not in catalogue.types:
            e.fail(f"type {type_id!r} is not in the catalogue")
        quantities = catalogue.get(type_id).quantities
        aggregate = e.text("aggregate")
        names = tuple(str(q) for q in e.items("quantities"))
        for q in names:
            if q not in quantities or aggregate not in aggregated(quantities[q]):
                e.fail(f"{aggregate} of {type_id}.{q} is not stored (docs/storage.md)")
        step = e.number("step_s")
        if step < 60 or not step.is_integer():
            e.fail("step_s must be a whole number of seconds >= 60")
        d = Dataset(
            e.ident(), e.text("title_en"), e.text("title_zh"), e.text("description"), type_id,
            names, aggregate, int(step), int(e.number("max_days")), e.text("update_frequency"),
        )  # fmt: skip
        datasets[d.id] = d
    licence = {k: lic.text(k) for k in ("id", "name", "url", "attribution")}
    return OpenDataCatalogue(top.text("publisher"), licence, datasets)
