"""CSV lines straight from the bytes of InfluxDB's JSON answer, when that gives exactly what
decoding it and writing it with ``csv.writer`` would.

Why: for a day of raw readings (1,440 rows) ``csv.writer`` spends most of its time in
``repr(float)``, and decoding the JSON first costs as much again: the export took longer
than InfluxDB's own query (docs/benchmarks.md). InfluxDB writes every number in the
shortest form that reads back the same, which is what ``repr`` writes too, so for the
usual answer (RFC 3339 times, plain numbers, booleans, nulls) a CSV line is a JSON row
with its brackets, quotes and nulls taken out. Every check here is a C-speed scan of the
bytes; any doubt (a string value, an exponent, a number below 1e-4 or ``-0``, which
Python writes as ``5e-05`` and ``0``, or another shape of answer) returns None, and the
caller decodes and writes the rows as before. tests/test_csv_rows.py compares the two
on real InfluxDB answers.
"""

from __future__ import annotations

import orjson

_HEAD = b'{"results":[{"statement_id":0,"series":[{"name":"'
_COLUMNS = b'","columns":'
_VALUES = b',"values":[['
_TAIL = b"]]}]}]}\n"


def csv_lines(body: bytes, names: list[str]) -> bytes | None:
    """The rows as CSV lines (``\\r\\n`` each) if InfluxDB's answer has the columns
    ``time, *names`` and only values whose text Python would write the same; else None."""
    if not (body.startswith(_HEAD) and body.endswith(_TAIL)):
        return None
    at_columns = body.find(_COLUMNS, len(_HEAD))
    at_values = body.find(_VALUES, at_columns)
    if at_columns < 0 or at_values < 0 or b'"' in body[len(_HEAD) : at_columns]:
        return None
    try:
        columns = orjson.loads(body[at_columns + len(_COLUMNS) : at_values])
    except orjson.JSONDecodeError:
        return None
    if columns != ["time", *names]:
        return None
    rows = body[at_values + len(_VALUES) - 1 : -len(_TAIL) + 1]  # "[...],...,[...]"
    if (
        b',"' in rows  # a string value (only the time, first in its row, may be one)
        or b"]" in rows[:-1].replace(b"],[", b"")  # rows are flat: no nested arrays
        or b"{" in rows
        or b"E" in rows
        or rows.count(b"e") != rows.count(b"true") + rows.count(b"false")  # an exponent
        # numbers follow a comma (the time comes first): |x| < 1e-4, which Python writes
        # as 5e-05 where InfluxDB wrote 0.00005, and -0, which Python writes as 0
        or b",0.0000" in rows
        or b",-0.0000" in rows
        or b",-0," in rows
        or b",-0]" in rows
    ):
        return None
    lines = rows[1:-1].replace(b"],[", b"\r\n").translate(None, b'"')
    if b"null" in lines:
        lines = lines.replace(b"null", b"")
    if b"true" in lines or b"false" in lines:
        lines = lines.replace(b"true", b"True").replace(b"false", b"False")
    return lines + b"\r\n"
