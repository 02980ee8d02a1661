"""Prepared statements: handles, their ``?`` parameters, and binding values into the SQL.

DuckDB cannot type a ``?`` before values are bound (it reports ``UNKNOWN``), so the
parameter schema declares each parameter as nullable ``utf8``; clients may bind values of
any scalar Arrow type. Bound values are written into the statement as typed SQL literals
(never spliced as text: strings are quoted, bytes become BLOB literals), and the
resulting statement goes through the same read-only guard, timeout and caches as any
other query. Handles live in a bounded LRU: the oldest unused handle is forgotten first.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from flight_lake.errors import InvalidInput, NotFound

MAX_STATEMENTS = 4096  # handles kept per server; clients close theirs, this bounds leaks


@dataclass
class PreparedStatement:
    handle: bytes
    sql: str
    placeholders: list[int]  # offsets of each ``?`` in ``sql``
    parameters: list[object] | None = field(default=None)  # the bound row, if any

    @property
    def parameter_schema(self) -> pa.Schema:
        return pa.schema([pa.field(str(index + 1), pa.utf8())
                          for index in range(len(self.placeholders))])

    def bind(self, batches: list[pa.RecordBatch]) -> None:
        """Keep one row of parameter values; more rows (executemany) are refused."""
        rows = sum(batch.num_rows for batch in batches)
        if rows == 0:
            self.parameters = None
            return
        if rows > 1:
            raise InvalidInput(
                f"{rows} parameter sets bound to a query: executemany is not supported "
                "(the lake is read-only over SQL; bind one set and execute it)")
        batch = next(batch for batch in batches if batch.num_rows)
        if batch.num_columns != len(self.placeholders):
            raise InvalidInput(f"the statement has {len(self.placeholders)} parameters, "
                               f"{batch.num_columns} values were bound")
        self.parameters = [column[0] for column in batch.columns]

    def statement(self) -> str:
        """The SQL to run: the bound values written in as literals."""
        if not self.placeholders:
            return self.sql
        if self.parameters is None:
            raise InvalidInput(f"the statement has {len(self.placeholders)} parameters "
                               "and none are bound")
        return render(self.sql, self.placeholders, self.parameters)

    def null_statement(self) -> str:
        """The SQL with every parameter NULL: enough to learn the result schema."""
        return render(self.sql, self.placeholders, [None] * len(self.placeholders))


class PreparedStatements:
    """The server's open prepared statements, by handle; thread-safe and bounded."""

    def __init__(self, capacity: int = MAX_STATEMENTS) -> None:
        self._statements: OrderedDict[bytes, PreparedStatement] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def create(self, sql: str) -> PreparedStatement:
        statement = PreparedStatement(secrets.token_bytes(16), sql, placeholders(sql))
        with self._lock:
            self._statements[statement.handle] = statement
            while len(self._statements) > self._capacity:
                self._statements.popitem(last=False)
        return statement

    def get(self, handle: bytes) -> PreparedStatement:
        with self._lock:
            statement = self._statements.get(handle)
            if statement is None:
                raise NotFound("unknown or closed prepared statement handle")
            self._statements.move_to_end(handle)
            return statement

    def close(self, handle: bytes) -> None:
        with self._lock:
            self._statements.pop(handle, None)

    def __len__(self) -> int:
        return len(self._statements)


def placeholders(sql: str) -> list[int]:
    """Offsets of the ``?`` parameters, as DuckDB's tokenizer finds them (not in strings,
    quoted names or comments)."""
    try:
        tokens = duckdb.tokenize(sql)
    except (duckdb.Error, RuntimeError) as exc:
        raise InvalidInput(f"cannot read the statement: {exc}") from exc
    offsets = []
    for position, kind in tokens:
        if kind != duckdb.token_type.operator or sql[position] != "?":
            continue
        if sql[position + 1:position + 2].isdigit():
            raise InvalidInput("numbered parameters (?1) are not supported; use ?")
        offsets.append(position)
    return offsets


def render(sql: str, offsets: list[int], values: list[object]) -> str:
    parts = []
    start = 0
    for offset, value in zip(offsets, values, strict=True):
        parts.append(sql[start:offset])
        parts.append(literal(value))
        start = offset + 1
    parts.append(sql[start:])
    return "".join(parts)


def literal(value: object) -> str:
    """One parameter value (a Python or Arrow scalar) as a typed DuckDB literal."""
    if isinstance(value, pa.Scalar):
        value = value.as_py()
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return f"CAST({value!r} AS DOUBLE)"
        return f"CAST('{value!r}' AS DOUBLE)"  # 'nan', 'inf', '-inf'
    if isinstance(value, decimal.Decimal) and value.is_finite():
        exponent = int(value.as_tuple().exponent)
        scale = max(-exponent, 0)
        precision = min(max(len(value.as_tuple().digits) + max(exponent, 0), scale, 1), 38)
        return f"CAST('{value}' AS DECIMAL({precision}, {scale}))"
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{byte:02x}" for byte in value) + "'::BLOB"
    if isinstance(value, dt.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} {_quoted(value.isoformat(sep=' '))}"
    if isinstance(value, dt.date):
        return f"DATE {_quoted(value.isoformat())}"
    if isinstance(value, dt.time):
        return f"TIME {_quoted(value.isoformat())}"
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
        return f"to_microseconds({micros})"
    return _refuse(value)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _refuse(value: object) -> str:
    raise InvalidInput(f"cannot bind a parameter of type {type(value).__name__}: "
                       "use a number, string, bytes, boolean, date, time or timestamp")
