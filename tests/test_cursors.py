"""Paging cursors (sensornet.cursors): only what ``encode`` made of a key of the expected
shape decodes; garbage is refused, never read as the start of the listing."""

from __future__ import annotations

import re

import pytest

from sensornet import cursors
from sensornet.errors import InvalidCursor

ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


@pytest.mark.parametrize("key", ["AQ-JA10001", "a", "静安寺-01", "x" * 128])
def test_round_trip(key: str) -> None:
    assert cursors.decode(cursors.encode(key), ID, "a sensor id") == key


@pytest.mark.parametrize(
    "garbage",
    ["", "!!!!", "AAAA", "zzzz", "YWJj=", "YW Jj", "YWJj\n", "YWJ", "x" * 401, "%%%"],
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursor, match="not a next_cursor"):
        cursors.decode(garbage, ID, "a sensor id")


def test_a_key_of_another_shape_is_refused() -> None:
    time = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    with pytest.raises(InvalidCursor, match="a reading's time"):
        cursors.decode(cursors.encode("AQ-JA10001"), time, "a reading's time")
