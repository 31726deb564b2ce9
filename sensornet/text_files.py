"""Text files as people save them: UTF-8 (with or without a BOM), UTF-16 with a BOM, or
GBK/GB18030, which Excel on Chinese Windows writes for "CSV". Pure functions."""

from __future__ import annotations

import codecs

from sensornet.errors import SensornetError


class TextEncodingError(SensornetError):
    """The bytes are in none of the encodings a spreadsheet export uses here."""


BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with BOM"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


def decode_text(data: bytes) -> tuple[str, str]:
    """The text and the name of the encoding it was read as.

    A BOM decides; otherwise UTF-8 (which is strict: GBK text is almost never valid
    UTF-8), then GB18030, the superset of GBK and GB2312 that every Chinese Windows
    export decodes with."""
    for bom, codec, name in BOMS:
        if data.startswith(bom):
            return data.decode(codec), name
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("gb18030"), "GBK/GB18030"
    except UnicodeDecodeError:
        raise TextEncodingError(
            f"not UTF-8 ({utf8_error.reason} at byte {utf8_error.start}) nor GBK/GB18030: "
            "save the file as 'CSV UTF-8' and try again"
        ) from None
