"""The one error hierarchy of flight_lake.

Every failure a user can cause or meet is one of these. Services raise them (translating
DuckDB, Arrow and OS errors with ``raise ... from exc``); each front end translates them
once, at its edge: the Flight server into Flight errors, the HTTP adapter into JSON
responses with the status below.

    LakeError                   500 internal
    ├── InvalidInput            400 invalid_input      (carries ``line`` for CSV input)
    ├── Unauthenticated         401 unauthenticated
    ├── PermissionDenied        403 permission_denied  (e.g. SQL that writes or reads files)
    ├── NotFound                404 not_found
    ├── Conflict                409 conflict
    ├── TooLarge                413 too_large
    ├── QueryTimeout            504 timeout
    ├── Cancelled               499 cancelled          (a read cancelled by its id)
    ├── Busy                    503 busy               (retry after ``retry_after`` seconds)
    ├── Unavailable             503 unavailable        (shutting down)
    └── StorageError            502 storage_error      (the object store failed us)
"""

from __future__ import annotations

from typing import Any, ClassVar


class LakeError(Exception):
    """Base of every flight_lake error; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, detail: str, *, line: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The JSON body both front ends send: ``{"error": code, "detail": ...}``."""
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.line is not None:
            body["line"] = self.line
        body.update(self.extra)
        return body


class InvalidInput(LakeError):
    code = "invalid_input"
    http_status = 400


class Unauthenticated(LakeError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(LakeError):
    code = "permission_denied"
    http_status = 403


class NotFound(LakeError):
    code = "not_found"
    http_status = 404


class Conflict(LakeError):
    code = "conflict"
    http_status = 409


class TooLarge(LakeError):
    code = "too_large"
    http_status = 413


class QueryTimeout(LakeError):
    code = "timeout"
    http_status = 504


class Cancelled(LakeError):
    """A read stopped on request (``Lake.cancel``); 499 is gRPC's CANCELLED over HTTP."""

    code = "cancelled"
    http_status = 499


class Busy(LakeError):
    code = "busy"
    http_status = 503
    retry_after: ClassVar[int] = 5


class Unavailable(LakeError):
    code = "unavailable"
    http_status = 503


class StorageError(LakeError):
    code = "storage_error"
    http_status = 502


ERRORS_BY_CODE: dict[str, type[LakeError]] = {
    cls.code: cls
    for cls in (
        LakeError,
        InvalidInput,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        Conflict,
        TooLarge,
        QueryTimeout,
        Cancelled,
        Busy,
        Unavailable,
        StorageError,
    )
}
