"""A sensor's rows straight from the bytes of InfluxDB's JSON answer, as CSV lines or as
the ``readings`` of ``/sensors/{id}/series``, when that gives exactly what decoding the
answer and writing it again (``csv.writer``, or ``orjson`` after building a dict per
row) gives.

Why: for a day of raw readings (1,440 rows) decoding, building the rows and writing them
again took longer than InfluxDB's own query (docs/benchmarks.md). InfluxDB writes every
number in the shortest form that reads back the same, which is what ``repr`` and orjson
write too, so for the usual answer (RFC 3339 times, plain numbers, booleans) a row's text
only needs its brackets, quotes or keys changed. Every check here is a C-speed scan of
the bytes; any doubt (a string value, an exponent, ``-0``, a number too long for 64 bits,
another shape of answer; for CSV also |x| < 1e-4, which Python writes as ``5e-05``; for
JSON a null, which drops its key) returns None and the caller goes the usual way.
tests/test_answer_rows.py compares both ways on real InfluxDB answers.
"""

from __future__ import annotations

import orjson

_HEAD = b'{"results":[{"statement_id":0,"series":[{"name":"'
_COLUMNS = b'","columns":'
_VALUES = b',"values":[['
_TAIL = b"]]}]}]}\n"
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def plain_rows(body: bytes, names: list[str]) -> bytes | None:
    """The text ``[...],...,[...]`` of the rows if the answer is one series with the
    columns ``time, *names`` and plain values only; else None."""
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
    rows = body[at_values + len(_VALUES) - 1 : -len(_TAIL) + 1]
    rows_count = rows.count(b"],[") + 1
    letters_e = rows.count(b"e")
    if (
        b',"' in rows  # a string value (only the time, first in its row, may be one)
        or rows.count(b"]") != rows_count  # rows are flat
        or b"{" in rows
        or b"E" in rows
        or (letters_e and letters_e != rows.count(b"true") + rows.count(b"false"))  # 1e-07
        or b",-0," in rows  # -0 reads back as 0 (numbers follow a comma: time is first)
        or b",-0]" in rows
        or b"0" * 20 in rows.translate(_DIGITS_TO_ZERO)  # > 64 bits reads back as a float
    ):
        return None
    return rows


def csv_lines(body: bytes, names: list[str]) -> bytes | None:
    """The rows as CSV lines (``\\r\\n`` each), as ``csv.writer`` writes decoded rows."""
    rows = plain_rows(body, names)
    # Python writes |x| < 1e-4 as 5e-05 where InfluxDB wrote 0.00005
    if rows is None or b",0.0000" in rows or b",-0.0000" in rows:
        return None
    lines = rows[1:-1].replace(b"],[", b"\r\n").translate(None, b'"')
    if b"null" in lines:
        lines = lines.replace(b"null", b"")  # csv.writer writes None as nothing
    if b"true" in lines or b"false" in lines:
        lines = lines.replace(b"true", b"True").replace(b"false", b"False")
    return lines + b"\r\n"


def json_readings(body: bytes, names: list[str]) -> tuple[bytes, int, str] | None:
    """``{"time": t, "values": {name: value, ...}}, ...`` (without the enclosing brackets),
    the number of rows and the last row's time; None when a row lacks a value."""
    rows = plain_rows(body, names)
    if rows is None or b"null" in rows:
        return None
    values = rows[1:-1].replace(b"],[", b",").split(b",")
    width = len(names) + 1
    if len(values) % width:
        return None
    keys = b",".join(b'"%s":%%s' % name.encode() for name in names)  # names are identifiers
    row = b'{"time":%s,"values":{' + keys + b"}},"
    count = len(values) // width
    return (row * count % tuple(values))[:-1], count, values[-width].strip(b'"').decode()
