"""A sensor's rows from the bytes of InfluxDB's JSON answer: the ``readings`` of
``/sensors/{id}/series`` and the lines of its CSV export.

Why: for a day of raw readings (1,440 rows) decoding, building the rows and writing them
again took longer than InfluxDB's own query (docs/benchmarks.md).

- ``/series`` rows are ``[time, *quantities]`` arrays, InfluxDB's own shape, so the text
  of its ``values`` array is passed on whenever the bytes prove it is exactly that (one
  statement, one series, the expected columns in order, no string but the times); other
  answers are decoded, rearranged and written again.
- CSV lines: InfluxDB writes every number in the shortest form that reads back the same,
  which is what ``repr`` writes too, so for the usual answer (RFC 3339 times, plain
  numbers, booleans) a row's text only needs its brackets and quotes removed. Every check
  is a C-speed scan of the bytes; any doubt (a string value, an exponent, ``-0``, a number
  too long for 64 bits, |x| < 1e-4 which Python writes as ``5e-05``, another shape of
  answer) returns None and the caller writes decoded rows with ``csv.writer``.

tests/test_answer_rows.py compares both ways on real InfluxDB answers.
"""

from __future__ import annotations

from typing import Any

import orjson

from sensornet.influx import first_series

_HEAD = b'{"results":[{"statement_id":0,"series":[{"name":"'
_COLUMNS = b'","columns":'
_VALUES = b',"values":[['
_TAIL = b"]]}]}]}\n"
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _values_text(body: bytes, names: list[str]) -> bytes | None:
    """The text ``[[...],...,[...]]`` of the rows if the answer is one statement with one
    series whose columns are ``time, *names`` and which has nothing after its values (no
    ``partial``); else None."""
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
    return body[at_values + len(_VALUES) - 2 : -len(_TAIL) + 2]


def plain_rows(body: bytes, names: list[str]) -> bytes | None:
    """The text ``[...],...,[...]`` of the rows if the answer is one series with the
    columns ``time, *names`` and plain values only; else None."""
    values = _values_text(body, names)
    if values is None:
        return None
    rows = values[1:-1]
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


def series_rows(body: bytes, names: list[str]) -> tuple[bytes, int, str | None]:
    """The rows of a one-sensor answer as the JSON text ``[[time, *names], ...]``, their
    count and the last row's time. Raises ``InfluxError`` when InfluxDB reported one.

    The text is InfluxDB's own when the bytes prove it is exactly that array: one series
    with columns ``time, *names`` (``_values_text``), and no ``{`` or ``,"`` in the rows,
    so nothing but the times (first in each row, after ``[``) is a string; then every
    ``[`` but the first starts a row, the last ``["`` starting the last one. Otherwise the
    answer is decoded, put in that order (a column InfluxDB did not send as null) and
    dumped."""
    rows = _values_text(body, names)
    if rows is not None and b"{" not in rows and b',"' not in rows:
        last = rows.rfind(b'["') + 2
        return rows, rows.count(b"[") - 1, rows[last : rows.index(b'"', last)].decode()
    series = first_series(body)
    if not series:
        return b"[]", 0, None
    values: list[list[Any]] = series[0].get("values") or []
    ordered = ordered_rows(series[0].get("columns", []), values, names)
    return orjson.dumps(ordered), len(ordered), values[-1][0] if values else None


def ordered_rows(columns: list[str], values: list[list[Any]], names: list[str]) -> list[list[Any]]:
    """Rows as ``[time, *names]`` (a column InfluxDB did not send as null)."""
    if columns == ["time", *names]:
        return values
    at = [columns.index(c) if c in columns else None for c in ("time", *names)]
    return [[None if i is None else v[i] for i in at] for v in values]
