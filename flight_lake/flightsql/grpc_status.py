"""LakeError → the gRPC status a SQL client expects, for Flight SQL calls only.

SQL clients (ADBC, JDBC) act on the gRPC status code, not on flight_lake's JSON error
body: bad SQL must be INVALID_ARGUMENT, an unknown table NOT_FOUND. The JSON dialect
(:mod:`flight_lake.flight.status`) reports those through Flight's own error classes with
the body in ``extra_info``; pyarrow lets a Python server send INVALID_ARGUMENT and
NOT_FOUND only as Arrow's exception types, which carry no ``extra_info`` (and
ALREADY_EXISTS not at all: a conflict is sent as INVALID_ARGUMENT). So a Flight SQL
handler runs under :func:`sql_errors`, and the server method under :func:`sql_status`,
which raises that Arrow exception from its own frame: pyarrow appends the traceback to the
message, and this keeps it to that one line.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from flight_lake.errors import LakeError
from flight_lake.flight.status import flight_errors

# Codes whose gRPC status only an Arrow exception type carries.
_ARROW_CLASS: dict[str, type[pa.ArrowException]] = {
    "invalid_input": pa.ArrowInvalid,  # INVALID_ARGUMENT
    "not_found": pa.ArrowKeyError,  # NOT_FOUND
    # ALREADY_EXISTS has no Arrow exception type; a conflict is the client's mistake
    "conflict": pa.ArrowInvalid,
}

Method = TypeVar("Method", bound=Callable[..., Any])


class _SqlStatus(Exception):
    """Carries the Arrow exception up to :func:`sql_status`'s frame."""

    def __init__(self, error: pa.ArrowException) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def sql_errors() -> Iterator[None]:
    """Like ``flight_errors``, with the SQL clients' codes where they differ."""
    try:
        with flight_errors():
            yield
    except flight.FlightError as exc:
        cause = exc.__cause__
        if isinstance(cause, LakeError) and cause.code in _ARROW_CLASS:
            raise _SqlStatus(_ARROW_CLASS[cause.code](f"{cause.code}: {cause.detail}")) from None
        raise


def sql_status(method: Method) -> Method:
    """Decorate a Flight server method whose Flight SQL branch runs under ``sql_errors``."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except _SqlStatus as status:
            raise status.error from None

    return wrapper  # type: ignore[return-value]
