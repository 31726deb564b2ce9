"""Hypothesis strategies shared by the differential tests of the fast lanes
(tests/test_fastlane.py, tests/test_envelope_lane.py): values a quantity accepts, and a
mix that is mostly well formed, as real traffic is."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from sensornet.catalogue import Quantity


def good_value(quantity: Quantity) -> st.SearchStrategy[Any]:
    if quantity.kind == "bool":
        return st.booleans()
    if quantity.kind == "string":
        return st.sampled_from(quantity.allowed or ("free text",))
    low, high = quantity.min or 0, quantity.max or 0
    if quantity.kind == "int":
        return st.integers(int(low), int(high))
    return st.one_of(st.floats(low, high), st.integers(math.ceil(low), math.floor(high)))


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], clean: bool = False
) -> st.SearchStrategy[Any]:
    """Mostly well formed, so a lane is exercised and not only bypassed: one draw in
    eight from the hostile set, none in a clean message."""
    if clean:
        return good
    return st.integers(0, 7).flatmap(lambda n: bad if n == 0 else good)
