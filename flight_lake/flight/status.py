"""LakeError → Flight error, in one place.

The Flight error class gives the gRPC status; ``extra_info`` carries the JSON body
(``{"error": code, "detail": …, "line": …}``) so a program can tell every kind apart,
and the message starts with ``"<code>: "`` for people reading it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as flight
import structlog

from flight_lake.errors import ERRORS_BY_CODE, LakeError, mapped
from flight_lake.flight.messages import dumps

log = structlog.get_logger()

FLIGHT_CLASS: dict[str, type[flight.FlightError]] = {
    "internal": flight.FlightInternalError,
    "invalid_input": flight.FlightServerError,
    "not_found": flight.FlightServerError,
    "conflict": flight.FlightServerError,
    "too_large": flight.FlightServerError,
    "storage_error": flight.FlightServerError,
    "busy": flight.FlightUnavailableError,
    "unavailable": flight.FlightUnavailableError,
    "unauthenticated": flight.FlightUnauthenticatedError,
    "permission_denied": flight.FlightUnauthorizedError,
    "timeout": flight.FlightTimedOutError,
    "cancelled": flight.FlightCancelledError,
}
"""The Flight error class (so the gRPC status) per error code; a subclass's code without a
row takes its ancestor's (``errors.mapped``)."""
assert set(FLIGHT_CLASS) <= set(ERRORS_BY_CODE)


def to_flight_error(error: LakeError) -> flight.FlightError:
    error_class = mapped(FLIGHT_CLASS, error)
    return error_class(f"{error.code}: {error.detail}", extra_info=dumps(error.to_dict()))


@contextlib.contextmanager
def flight_errors() -> Iterator[None]:
    """Translate whatever escapes a handler into a Flight error a client can read."""
    try:
        yield
    except flight.FlightError:
        raise
    except LakeError as exc:
        raise to_flight_error(exc) from exc
    except pa.ArrowException as exc:
        # Arrow errors that reach here come from the client's stream (a bad IPC message).
        raise to_flight_error(LakeError(f"stream error: {exc}")) from exc
    except Exception as exc:
        log.exception("unexpected_error")
        raise to_flight_error(LakeError("internal error; see the server log")) from exc
