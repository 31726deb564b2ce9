"""How far a subscription is behind, and what it should have received in a window: the
same reads the pusher makes (``sources``), counted rather than sent, so "should have
received" means exactly what the pusher would deliver."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient
from sensornet.northbound.events import Cursor
from sensornet.northbound.sources import next_window, read_aggregates, read_page
from sensornet.northbound.spec import Kind, Spec
from sensornet.registry.store import DeviceInfo

PAGE = 10_000
#: Past this many pending events a status answer says "at least" (``capped``).
PENDING_CAP = 100_000
#: The ``source`` of events made only to be counted (never sent).
COUNTING = "/counting"
#: Accounting windows end on whole minutes (acknowledgements are counted per minute).
MINUTE_NS = 60_000_000_000


@dataclass(frozen=True, slots=True)
class Count:
    events: int
    first_ns: int | None  # time of the first event counted
    capped: bool


async def count_events(
    influx: InfluxClient,
    kind: Kind,
    spec: Spec,
    catalogue: Catalogue,
    devices: Mapping[str, DeviceInfo],
    after: Cursor,
    end_ns: int,
    settle_ns: int,
    cap: int,
) -> Count:
    """Events of ``kind`` after ``after`` with a time before ``end_ns`` (aggregates: buckets
    starting before it and complete ``settle_ns`` ago), up to ``cap``."""
    n, first = 0, None
    window = 60 * 1_000_000_000
    while n < cap:
        if kind == "aggregates":
            page = await read_aggregates(
                influx, spec, catalogue, after, time.time_ns(), settle_ns, PAGE, COUNTING
            )
        else:
            page = await read_page(
                influx, kind, spec, catalogue, devices, after, end_ns - 1, PAGE, window,
                COUNTING,
            )  # fmt: skip
            window = next_window(window, page.rows, PAGE)
        if page.upto is None:
            break
        inside = [t for t, _, _ in page.items if t < end_ns]
        if inside and first is None:
            first = inside[0]
        n += len(inside)
        if page.upto.time_ns >= end_ns - 1 and not page.more:
            break
        if len(inside) < len(page.items):
            break
        after = page.upto
    return Count(min(n, cap), first, n >= cap)


def window_start(start_ns: int) -> Cursor:
    """The cursor just before ``start_ns`` (its own instant included)."""
    return Cursor(start_ns - 1, "\U0010ffff")
