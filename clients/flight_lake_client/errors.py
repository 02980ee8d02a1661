"""The client's exceptions: the server's error hierarchy, rebuilt from Flight errors.

Every error the server sends carries a JSON body in the Flight error's ``extra_info``
(``{"error": code, "detail": …, "line": …}``); ``from_flight_error`` reads the code and
raises the class of the same name the server used::

    LakeError                   internal
    ├── InvalidInput            invalid_input      (``line``: the CSV line, when there is one)
    │   ├── NotAcceptable       not_acceptable     (no answer format the request accepts)
    │   └── UnsupportedMediaType unsupported_media_type (an upload type the server cannot read)
    ├── Unauthenticated         unauthenticated
    ├── PermissionDenied        permission_denied  (e.g. SQL that writes or reads files)
    ├── NotFound                not_found
    ├── Conflict                conflict
    ├── TooLarge                too_large
    ├── QueryTimeout            timeout
    ├── Cancelled               cancelled          (a read stopped on request)
    ├── Busy                    busy               (``retry_after`` seconds)
    ├── Unavailable             unavailable        (shutting down, or not reachable)
    └── StorageError            storage_error

This module mirrors ``flight_lake.errors`` by name, code and parent on purpose: the client
is installed and imported without the server package (``tests/test_client.py`` checks that
the two trees match).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import pyarrow.flight as flight


class LakeError(Exception):
    """Base of every error from a flight_lake server; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, line: int | None = None, **extra: Any) -> None:
        named = line is None or f"line {line}" in detail
        super().__init__(detail if named else f"{detail} (line {line})")
        self.detail = detail
        self.line = line
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The same JSON body the server sent: ``{"error": code, "detail": …}``."""
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.line is not None:
            body["line"] = self.line
        body.update(self.extra)
        return body


class InvalidInput(LakeError):
    code = "invalid_input"


class NotAcceptable(InvalidInput):
    code = "not_acceptable"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class Unauthenticated(LakeError):
    code = "unauthenticated"


class PermissionDenied(LakeError):
    code = "permission_denied"


class NotFound(LakeError):
    code = "not_found"


class Conflict(LakeError):
    code = "conflict"


class TooLarge(LakeError):
    code = "too_large"


class TooManyPartitions(TooLarge):
    code = "too_many_partitions"


class QueryTimeout(LakeError):
    code = "timeout"


class Cancelled(LakeError):
    code = "cancelled"


class Busy(LakeError):
    code = "busy"

    @property
    def retry_after(self) -> int | None:
        """Seconds the server asks us to wait before trying again (it always says)."""
        value = self.extra.get("retry_after")
        return None if value is None else int(value)


class Unavailable(LakeError):
    code = "unavailable"


class StorageError(LakeError):
    code = "storage_error"


ERRORS_BY_CODE: dict[str, type[LakeError]] = {
    cls.code: cls
    for cls in (
        LakeError,
        InvalidInput,
        NotAcceptable,
        UnsupportedMediaType,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        Conflict,
        TooLarge,
        TooManyPartitions,
        QueryTimeout,
        Cancelled,
        Busy,
        Unavailable,
        StorageError,
    )
}

# Used only when a Flight error carries no JSON body (e.g. the server cannot be reached).
_BY_FLIGHT_CLASS: tuple[tuple[type[Exception], type[LakeError]], ...] = (
    (flight.FlightUnavailableError, Unavailable),
    (flight.FlightUnauthenticatedError, Unauthenticated),
    (flight.FlightUnauthorizedError, PermissionDenied),
    (flight.FlightTimedOutError, QueryTimeout),
)


def from_flight_error(exc: Exception, location: str | None = None) -> LakeError:
    """The ``LakeError`` that a Flight (or Arrow) error raised by pyarrow stands for.

    ``location`` (the server's address) is named in the detail when the server could not
    be reached at all.
    """
    body = _json_body(getattr(exc, "extra_info", None))
    if body is not None:
        code = str(body.pop("error", "internal"))
        detail = str(body.pop("detail", _first_line(exc)))
        line = body.pop("line", None)
        error_class = ERRORS_BY_CODE.get(code, LakeError)
        return error_class(detail, line=line if isinstance(line, int) else None, **body)
    for flight_class, error_class in _BY_FLIGHT_CLASS:
        if isinstance(exc, flight_class):
            if error_class is Unavailable and location:
                return Unavailable(f"cannot reach {location}: {_first_line(exc)}")
            return error_class(_first_line(exc))
    return LakeError(_first_line(exc))


def _json_body(extra_info: object) -> dict[str, Any] | None:
    if not extra_info or not isinstance(extra_info, bytes | bytearray | memoryview):
        return None
    try:
        body = json.loads(bytes(extra_info))
    except ValueError:
        return None
    return body if isinstance(body, dict) and "error" in body else None


_PYARROW_PREFIX = re.compile(r"^Flight returned \w+ error, with message: ")


def _first_line(exc: Exception) -> str:
    text = _PYARROW_PREFIX.sub("", str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__
