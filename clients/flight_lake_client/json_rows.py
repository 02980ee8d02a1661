"""Record batches as JSON row objects: ``{"column":value,…}`` per row, compact.

The one JSON encoding of query results: the HTTP adapter's ``application/json`` and
``application/x-ndjson`` answers and ``flight-lake sql --format json`` both write through
:class:`JsonRows`, so the same query gives the same bytes, always valid JSON. It lives in the
client package because the CLI uses the client and must not import the server.

Two routes give the same JSON. Small batches go through Python (``rows_of`` and the
standard encoder), which costs little per batch. Batches of ``ARROW_ROUTE_ROWS`` rows or
more are built with Arrow compute kernels: each column becomes a column of JSON text
(numbers and dates cast to strings, strings quoted and escaped), then the row objects are
joined element-wise and their bytes taken as one piece — no Python object per value.
Columns the kernels cannot write (binary, nested, intervals, strings with rare control
characters) fall back to Python for that column only.

Values: dates, times and timestamps are ISO 8601 strings (tz-aware timestamps in UTC with
``Z``); whole decimals (scale 0) are exact integers, other decimals doubles; NaN and
infinities are ``null``; binary is base64; a duplicated column name keeps its first place
and its last value (as a dict built from the row would).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

JSON_SLICE_ROWS = 8192  # rows turned into JSON text at once, to bound memory per step
ARROW_ROUTE_ROWS = 512  # below this, the fixed cost of the kernels outweighs Python's per-row cost
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=lambda v: _json_default(v)
).encode
_RARE_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # escaped by Python: \uXXXX, \b, \f
_TO_ESCAPE = r'["\\\n\r\t]'
_WHOLE_NUMBER = r"^-?[0-9]+$"  # a float Arrow wrote without a point: "2" for 2.0


class JsonRows:
    """A JSON array of row objects (``[{…},{…}]``), or one object per line (``lines=True``),
    produced piece by piece: ``begin()`` once, ``batch()`` per record batch, ``end()`` once.
    The bytes do not depend on how the rows are cut into batches."""

    def __init__(self, *, lines: bool = False) -> None:
        self.lines = lines
        self._rows_written = 0

    def begin(self) -> bytes:
        return b"" if self.lines else b"["

    def batch(self, batch: pa.RecordBatch) -> bytes:
        pieces: list[bytes] = []
        for offset in range(0, batch.num_rows, JSON_SLICE_ROWS):
            rows = batch.slice(offset, JSON_SLICE_ROWS)
            if self.lines:
                pieces.append(json_rows(rows, "\n"))
            else:  # "," between rows: before each slice but the first, none after the last
                pieces.append((b"," if self._rows_written else b"") + json_rows(rows, ",")[:-1])
            self._rows_written += rows.num_rows
        return b"".join(pieces)

    def end(self) -> bytes:
        return b"" if self.lines else b"]"


def json_rows(batch: pa.RecordBatch, separator: str) -> bytes:
    """Each row of ``batch`` as a JSON object, ``separator`` after each one (UTF-8)."""
    if batch.num_rows == 0:
        return b""
    if batch.num_rows < ARROW_ROUTE_ROWS:
        return (separator.join(map(_ENCODE, rows_of(batch))) + separator).encode()
    columns: dict[str, pa.Array] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        columns[name] = column  # a repeated name: first place, last value
    parts: list[Any] = []
    for position, (name, column) in enumerate(columns.items()):
        parts.append(("{" if position == 0 else ",") + _ENCODE(name) + ":")
        parts.append(_json_text(column))
    parts.append("}" + separator)
    rows = pc.binary_join_element_wise(*parts, "")
    if rows.null_count:  # a null part would drop its row without a trace
        raise ValueError("a JSON row came out null")
    return _concatenated(rows)


def _concatenated(strings: pa.Array) -> bytes:
    """The values of a string array (no nulls) back to back, from its data buffer."""
    offsets = pa.Array.from_buffers(
        pa.int32(), len(strings) + 1, [None, strings.buffers()[1]], offset=strings.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    data = strings.buffers()[2]
    return b"" if data is None else data[start:end].to_pybytes()


def _json_text(column: pa.Array) -> pa.Array:
    """One column as a string column of JSON values, in Arrow where its type allows."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        text = column.cast(pa.string())
    elif pa.types.is_boolean(kind):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        text = _float_text(column.cast(pa.float64()))
    elif pa.types.is_string(kind):
        if pc.any(pc.match_substring_regex(column, _RARE_CONTROL)).as_py():
            return _python_text(column)
        text = _quoted(_escaped(column))
    elif _is_temporal(kind):
        text = _quoted(_temporal_text(column))
    else:
        return _python_text(column)
    return pc.fill_null(text, "null")


def _float_text(column: pa.Array) -> pa.Array:
    text = column.cast(pa.string())
    whole = pc.match_substring_regex(text, _WHOLE_NUMBER)
    if pc.any(whole).as_py():  # "2" → "2.0", as Python writes a float
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    finite = pc.is_finite(column)
    if pc.any(pc.invert(finite)).as_py():  # JSON has no NaN or infinity
        text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    return text


def _escaped(column: pa.Array) -> pa.Array:
    """Backslash, quote, newline, return and tab escaped as JSON wants (nothing else left)."""
    if not pc.any(pc.match_substring_regex(column, _TO_ESCAPE)).as_py():
        return column
    column = pc.replace_substring_regex(column, r'(["\\])', r"\\\1")
    for raw, escaped in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        column = pc.replace_substring(column, raw, escaped)
    return column


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _python_text(column: pa.Array) -> pa.Array:
    return pa.array([_ENCODE(value) for value in _json_column(column)], pa.string())


def _is_temporal(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind)


def _temporal_text(column: pa.Array) -> pa.Array:
    """ISO 8601 text: ``T`` between date and time, tz-aware timestamps in UTC with ``Z``."""
    kind = column.type
    if not pa.types.is_timestamp(kind):
        return column.cast(pa.string())
    if kind.tz is not None:
        column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
    return pc.replace_substring(column.cast(pa.string()), " ", "T", max_replacements=1)


# -- the Python route ------------------------------------------------------------------


def rows_of(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``batch`` as dicts of JSON-ready Python values."""
    names = batch.schema.names
    columns = [_json_column(column) for column in batch.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _json_column(column: pa.Array) -> list[Any]:
    """One column as Python values, converting in Arrow where a whole column can be."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if _is_temporal(kind):
        return _temporal_text(column).to_pylist()
    if pa.types.is_decimal(kind):
        if kind.scale == 0:  # integers (DuckDB's HUGEINT sums): exact, at any size
            return [None if value is None else int(value) for value in column.to_pylist()]
        return column.cast(pa.float64()).to_pylist()
    if pa.types.is_interval(kind):
        return [
            None if value is None else
            {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
            for value in column.to_pylist()
        ]
    if pa.types.is_floating(kind):
        if pa.types.is_float16(kind):
            column = column.cast(pa.float32())
        finite = pc.is_finite(column)
        if pc.all(finite).as_py() is False:
            column = pc.if_else(finite, column, pa.scalar(None, column.type))
        return column.to_pylist()
    if pa.types.is_nested(kind):
        return [_finite(value) for value in column.to_pylist()]
    return column.to_pylist()


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities nested anywhere inside it made null (JSON has none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, tuple):  # map entries come back as (key, value) pairs
        return tuple(_finite(item) for item in value)
    return value


def _json_default(value: Any) -> Any:
    """Values nested inside lists, structs and maps that ``json`` cannot write itself."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
