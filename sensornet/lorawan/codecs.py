"""Payload codecs a sensor type may declare in the catalogue (``codec:``), read strictly
at load so a typo fails at start-up, naming the file and type. Pure.

    codec: {kind: cayenne_lpp}
    codec:
      kind: layout
      fields:
        - {key: depth, width: 2, scale: 0.1}        # uint16 big-endian, 0.1 cm steps
        - {skip: 1}
        - {key: battery, width: 1, scale: 0.02}

A codec turns a LoRaWAN FRMPayload into ``{key: value}``; the keys then go through the
key map (``sensornet.lorawan.keymap``) to the type's quantities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from sensornet.lorawan.cayenne import decode_lpp
from sensornet.lorawan.layout import WIDTHS, Layout, LayoutField

CodecKind = Literal["cayenne_lpp", "layout"]


@dataclass(frozen=True, slots=True)
class Codec:
    kind: CodecKind
    layout: Layout | None = None

    def decode(self, data: bytes) -> dict[str, Any]:
        """``PayloadError("codec_error")`` when the bytes do not fit the codec."""
        if self.layout is not None:
            return dict(self.layout.decode(data))
        return dict(decode_lpp(data))


def parse_codec(raw: object, fail: Callable[[str], NoReturn]) -> Codec:
    """A ``codec:`` entry of the catalogue; ``fail`` raises with the file and type named."""
    if not isinstance(raw, dict):
        fail(f"codec must be a mapping, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind == "cayenne_lpp":
        _only(raw, {"kind"}, "codec", fail)
        return Codec("cayenne_lpp")
    if kind != "layout":
        fail(f"codec kind {kind!r} must be cayenne_lpp or layout")
    _only(raw, {"kind", "fields"}, "codec", fail)
    items = raw.get("fields")
    if not isinstance(items, list) or not items:
        fail("codec fields must be a non-empty list")
    fields = tuple(_field(item, index, fail) for index, item in enumerate(items))
    keys = [f.key for f in fields if f.key is not None]
    if not keys:
        fail("codec fields: a layout must read at least one key")
    if len(set(keys)) != len(keys):
        fail(f"codec fields: a key appears twice in {keys}")
    return Codec("layout", Layout(fields))


def _only(
    raw: dict[Any, Any], allowed: set[str], where: str, fail: Callable[[str], NoReturn]
) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        fail(f"{where}: unknown key(s) {', '.join(unknown)} (a typo?)")


def _field(raw: object, index: int, fail: Callable[[str], NoReturn]) -> LayoutField:
    where = f"codec fields[{index}]"
    if not isinstance(raw, dict):
        fail(f"{where} must be a mapping")
    if "skip" in raw:
        _only(raw, {"skip"}, where, fail)
        skip = raw["skip"]
        if isinstance(skip, bool) or not isinstance(skip, int) or not 1 <= skip <= 64:
            fail(f"{where}: skip must be a whole number of bytes in [1, 64], got {skip!r}")
        return LayoutField(None, skip)
    _only(raw, {"key", "width", "signed", "endian", "scale", "bool"}, where, fail)
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        fail(f"{where}: key must be a non-empty string")
    width = raw.get("width")
    if width not in WIDTHS or isinstance(width, bool):
        fail(f"{where} ({key}): width must be one of {WIDTHS} bytes, got {width!r}")
    signed = raw.get("signed", False)
    as_bool = raw.get("bool", False)
    if not isinstance(signed, bool) or not isinstance(as_bool, bool):
        fail(f"{where} ({key}): signed and bool must be true or false")
    endian = raw.get("endian", "big")
    if endian not in ("big", "little"):
        fail(f"{where} ({key}): endian must be big or little, got {endian!r}")
    scale = raw.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) \
            or scale == 0:  # fmt: skip
        fail(f"{where} ({key}): scale must be a finite non-zero number, got {scale!r}")
    if as_bool and scale != 1:
        fail(f"{where} ({key}): a bool field has no scale")
    return LayoutField(key, int(width), signed, endian == "little", float(scale), as_bool)
