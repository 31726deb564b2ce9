"""Paging cursors: the last key of a page, base64url without padding, refused unless it is
exactly what ``encode`` makes of a key of the expected shape.

Why strict: Python's base64 decoder skips characters outside its alphabet, so a garbage
cursor used to decode to something (often the empty string) and silently restart the
listing from the top; a client with a corrupted cursor then pages for ever. A cursor is
opaque to callers, so anything but our own is refused with the reason."""

from __future__ import annotations

import base64
import binascii
import re

from sensornet.errors import InvalidCursor

_ALPHABET = re.compile(r"[A-Za-z0-9_-]{1,400}")


def encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode(cursor: str, shape: re.Pattern[str], what: str) -> str:
    """The key in ``cursor``, which must be of ``shape`` (e.g. a sensor id); raises
    ``InvalidCursor`` naming ``what`` the cursor should hold."""
    refused = InvalidCursor(
        f"cursor {cursor[:60]!r} is not a next_cursor of this listing (it holds {what}): "
        "pass next_cursor unchanged, or leave it out to start from the first page"
    )
    if not _ALPHABET.fullmatch(cursor):
        raise refused
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        key = raw.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused from None
    if encode(key) != cursor or not shape.fullmatch(key):
        raise refused
    return key
