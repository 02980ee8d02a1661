"""DuckDB's exceptions as the lake's errors, chosen by exception type.

``translate`` maps each DuckDB exception class (walking its bases, so a new subclass falls
under its family) to a :mod:`flight_lake.errors` class through one table, ``BY_TYPE``:
parser, binder and other programming errors, conversion and other data errors are the
caller's bad input; permission errors are refused SQL; out-of-memory is a result too
large; IO and HTTP errors are the storage failing; an interrupt is the read's deadline
(timeout or cancel). A catalog error over a table that is not a dataset names the dataset.

One case carries no type: an error raised while DuckDB streams a result through Arrow's C
stream interface arrives as a plain ``OSError`` holding DuckDB's message, whose first words
are its exception type (``Conversion Error: …``). That label is looked up in ``BY_LABEL``
to get the class back; nothing else is read from message text.
"""

from __future__ import annotations

from collections.abc import Container

import duckdb
import structlog

from flight_lake.errors import (
    InvalidInput,
    LakeError,
    NotFound,
    PermissionDenied,
    StorageError,
    TooLarge,
    Unavailable,
)
from flight_lake.sql_guard import table_names
from flight_lake.watchdog import Deadline

log = structlog.get_logger()

BY_TYPE: dict[type[duckdb.Error], type[LakeError]] = {
    duckdb.ProgrammingError: InvalidInput,  # parser, syntax, binder, catalog, invalid input/type
    duckdb.DataError: InvalidInput,  # conversion, out of range, type mismatch
    duckdb.NotSupportedError: InvalidInput,  # not implemented
    duckdb.IntegrityError: InvalidInput,  # constraint
    duckdb.DependencyException: InvalidInput,
    duckdb.PermissionException: PermissionDenied,
    duckdb.OutOfMemoryException: TooLarge,
    duckdb.IOException: StorageError,  # HTTPException is one of these
    duckdb.ConnectionException: Unavailable,
}
"""LakeError class per DuckDB exception class; the first base found in the table wins."""

BY_LABEL: dict[str, type[duckdb.Error]] = {
    "conversion": duckdb.ConversionException,
    "decimal": duckdb.ConversionException,
    "out of range": duckdb.OutOfRangeException,
    "mismatch type": duckdb.TypeMismatchException,
    "invalid type": duckdb.InvalidTypeException,
    "invalid input": duckdb.InvalidInputException,
    "not implemented": duckdb.NotImplementedException,
    "out of memory": duckdb.OutOfMemoryException,
    "io": duckdb.IOException,
    "http": duckdb.HTTPException,
    "interrupt": duckdb.InterruptException,
    "permission": duckdb.PermissionException,
    "connection": duckdb.ConnectionException,
}
"""DuckDB's type label (``<label> Error: …``) → its class, for errors that lost their type."""


def translate(
    exc: BaseException,
    deadline: Deadline | None = None,
    *,
    sql: str | None = None,
    datasets: Container[str] = (),
) -> LakeError:
    """One DuckDB (or Arrow-wrapped DuckDB) error as the lake's error.

    ``deadline`` tells an interrupt by timeout from one on request; ``sql`` and
    ``datasets`` (the names that exist) let a catalog error name the unknown dataset.
    """
    if isinstance(exc, LakeError):
        return exc
    kind = duckdb_type(exc)
    message = str(exc).strip()
    if kind is not None and issubclass(kind, duckdb.InterruptException):
        if deadline is not None and deadline.fired:
            return deadline.timeout()
        return Unavailable("the query was interrupted: the server is shutting down")
    if kind is not None and issubclass(kind, duckdb.CatalogException) and sql is not None:
        unknown = [name for name in table_names(sql) if name.lower() not in datasets]
        if unknown:
            return NotFound(f"unknown dataset: {unknown[0]}")
    error = next((BY_TYPE[base] for base in (kind.__mro__ if kind else ()) if base in BY_TYPE),
                 LakeError)
    if error is LakeError:
        log.error("query_failed", error=message, error_type=type(exc).__name__)
    return error(message)


def duckdb_type(exc: BaseException) -> type[duckdb.Error] | None:
    """The DuckDB exception class of ``exc``, also when Arrow's stream dropped it."""
    if isinstance(exc, duckdb.Error):
        return type(exc)
    label, found, _ = str(exc).strip().partition(" Error:")
    return BY_LABEL.get(label.strip().lower()) if found else None
