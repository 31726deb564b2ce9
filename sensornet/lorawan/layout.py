"""A fixed-layout binary codec, declared as data (``codec: {kind: layout, ...}`` of a
sensor type in ``sensornet/data/catalogue.yaml``). Pure.

Most LoRaWAN sensors send a few integers at fixed offsets: "depth, uint16 big-endian, in
mm; battery, uint8, in 20 mV steps". Such a layout is written down once per sensor type,
in field order: each field has a ``width`` in bytes (1, 2, 3, 4 or 8), ``signed``,
``endian`` (``big``, the default, or ``little``), a ``scale`` the integer is multiplied by
(default 1) and, for a boolean quantity, ``bool: true`` (non-zero is true). ``{skip: N}``
passes over N bytes the platform does not read. A payload of any other length than the
layout's is refused (``codec_error``): a firmware that changed its layout must not be read
with the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensornet.errors import PayloadError

WIDTHS = (1, 2, 3, 4, 8)


@dataclass(frozen=True, slots=True)
class LayoutField:
    key: str | None  # None: skipped bytes
    width: int
    signed: bool = False
    little_endian: bool = False
    scale: float = 1.0
    as_bool: bool = False
    # a scale of 1/N as N (0 when it is not one): dividing rounds as decimals read;
    # worked out once, not per uplink
    divisor: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        divisor = 0
        if 0 < self.scale < 1:
            inverse = 1 / self.scale
            if abs(inverse - round(inverse)) < 1e-9:
                divisor = round(inverse)
        object.__setattr__(self, "divisor", divisor)


@dataclass(frozen=True, slots=True)
class Layout:
    fields: tuple[LayoutField, ...]

    @property
    def size(self) -> int:
        return sum(f.width for f in self.fields)

    def decode(self, data: bytes) -> dict[str, float | int | bool]:
        if len(data) != self.size:
            detail = f"layout: payload of {len(data)} bytes, the layout has {self.size}"
            raise PayloadError("codec_error", detail)
        out: dict[str, float | int | bool] = {}
        at = 0
        from_bytes = int.from_bytes
        for f in self.fields:
            end = at + f.width
            if f.key is None:
                at = end
                continue
            raw = from_bytes(data[at:end], "little" if f.little_endian else "big", signed=f.signed)
            at = end
            if f.as_bool:
                out[f.key] = raw != 0
            elif f.scale == 1.0:
                out[f.key] = raw
            elif f.divisor:
                out[f.key] = raw / f.divisor  # 123 / 10 is 12.3; 123 * 0.1 is not always
            else:
                out[f.key] = raw * f.scale
        return out
