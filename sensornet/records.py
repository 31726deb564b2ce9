"""Records passed between decoding, validation and storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensornet.errors import PayloadError


@dataclass(frozen=True, slots=True)
class ItemReject:
    """One reading of a multi-reading message that could not be decoded."""

    index: int
    sensor_id: str | None
    error: PayloadError
    seq: int | None = None  # the refused reading's, when it carried one


@dataclass(slots=True)
class Decoded:
    readings: list[RawReading]
    rejects: list[ItemReject]


@dataclass(slots=True)
class RawReading:
    """One device reading before validation. ``sensor_id`` is set by packs and by formats
    that name their device; ``scheme`` says how it names it: ``""`` a registry id, else a
    key of that scheme (``sensornet.formats.ID_SCHEMES``: a DevEUI, a chip id, ...)."""

    values: dict[str, Any]
    ts_ns: int | None = None
    seq: int | None = None
    sensor_id: str | None = None
    scheme: str = ""
