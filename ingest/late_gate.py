"""Which late points the ingester notes: only those a northbound subscription could be
owed (sensornet.northbound.late). The subscriptions are read here, apart from the writes,
so a slow or absent registry never holds a batch up; a view that is not renewed within
``OWED_MAX_AGE_S`` expires and every late point is noted again (fail safe)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from sensornet.northbound import store
from sensornet.northbound.late import OWED_CHECK_S, OWED_MAX_AGE_S, LateNotes

log = logging.getLogger("sensornet.ingest")


async def read_owed(late: LateNotes, engine: AsyncEngine) -> bool:
    """One look at the subscriptions; False (the view left to expire) when it failed."""
    began = time.monotonic()
    try:
        async with asyncio.timeout(OWED_MAX_AGE_S):
            starts = await store.earliest_starts(engine)
    except Exception as exc:  # the registry down, slow or without the table: notes on
        log.debug("northbound subscriptions unreadable, noting every late point: %r", exc)
        return False
    late.owed(starts, began)
    return True


async def keep_owed_fresh(late: LateNotes, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Read the subscriptions every ``OWED_CHECK_S`` until ``stop``."""
    failing = False
    while not stop.is_set():
        ok = await read_owed(late, engine)
        if not ok and not failing:
            log.warning("northbound subscriptions unreadable: every late point is noted")
        elif ok and failing:
            log.info("northbound subscriptions readable again")
        failing = not ok
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OWED_CHECK_S):
                await stop.wait()
