"""The one time range every route reads: ``start`` and ``end`` query parameters, one rule.

Each route used to check its own copy, with two different answers for ``end == start``.
Now: both are RFC 3339 with an offset, both inside what InfluxDB can hold; ``end``
defaults to now and ``start`` to the route's default span before ``end``; ``start`` must
be before ``end`` (an empty range is a 422, never a silently empty answer); and a route
may cap the span.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, NamedTuple

from fastapi import Query

from api.problems import Problem
from api.query_common import RFC3339, in_store

OFFSET_NEEDED = "use e.g. 2026-11-25T08:00:00+08:00"


class TimeRange(NamedTuple):
    start: datetime
    end: datetime


def checked_range(
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    default_span: timedelta,
    longest: timedelta | None = None,
) -> TimeRange:
    """The rule, as a plain function: the range, or a 422 problem saying what is wrong."""
    if (start is not None and start.tzinfo is None) or (end is not None and end.tzinfo is None):
        raise Problem(422, "Timestamps need an offset", OFFSET_NEEDED)
    in_store(start=start, end=end)
    end = end or now
    start = start or end - default_span
    in_store(start=start)  # the default span before an early end
    if not start < end:
        raise Problem(422, "Empty range", "start must be before end")
    if longest is not None and end - start > longest:
        days = longest / timedelta(days=1)
        raise Problem(
            422,
            "Range too long",
            f"at most {days:g} days per request: ask for several ranges",
            max_days=days,
        )
    return TimeRange(start, end)


#: The two query parameters, declared once; a route calls ``checked_range`` with them.
#: (A dependency taking them would take its routes off ``api.fast``'s path, which serves
#: only routes whose dependencies need nothing but the request: the rule stays one
#: function instead.)
Start = Annotated[
    datetime | None,
    Query(description="RFC 3339 with an offset; default: the route's span before end"),
    RFC3339,
]
StartRequired = Annotated[datetime, Query(description="RFC 3339 with an offset"), RFC3339]
End = Annotated[
    datetime | None, Query(description="RFC 3339 with an offset; default: now"), RFC3339
]
DAY = timedelta(days=1)
