"""The one error hierarchy of flight_lake.

Every failure a user can cause or meet is one of these. Services raise them (translating
DuckDB, Arrow and OS errors with ``raise ... from exc``); each edge maps the codes once, in
one table: HTTP statuses in :mod:`flight_lake.http.statuses`, Flight statuses in
:mod:`flight_lake.flight.status`, CLI exit codes in :mod:`flight_lake.cli.user`. A code an
edge's table does not name takes the entry of its nearest ancestor (``not_acceptable`` is
an ``invalid_input`` to an edge that has no row for it).

    LakeError                       internal
    ├── InvalidInput                invalid_input      (carries ``line`` for CSV input)
    │   ├── NotAcceptable           not_acceptable     (no result format the client accepts)
    │   └── UnsupportedMediaType    unsupported_media_type (an upload in a type not taken)
    ├── Unauthenticated             unauthenticated
    ├── PermissionDenied            permission_denied  (e.g. SQL that writes or reads files)
    ├── NotFound                    not_found
    ├── Conflict                    conflict
    ├── TooLarge                    too_large
    │   └── TooManyPartitions       too_many_partitions (an upload past ingest.max_partitions)
    ├── QueryTimeout                timeout
    ├── Cancelled                   cancelled          (a read cancelled by its id)
    ├── Busy                        busy               (retry after its ``retry_after`` seconds)
    ├── Unavailable                 unavailable        (shutting down)
    └── StorageError                storage_error      (the object store failed us)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from pydantic import ValidationError

T = TypeVar("T")


class LakeError(Exception):
    """Base of every flight_lake error; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, line: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The JSON body every front end sends: ``{"error": code, "detail": ...}``."""
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
    """A read stopped on request (``Lake.cancel``)."""

    code = "cancelled"


class Busy(LakeError):
    """Come back later: whoever refuses says when, and the body carries ``retry_after``."""

    code = "busy"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


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


def mapped(table: Mapping[str, T], error: LakeError) -> T:
    """``error``'s entry in an edge's ``table`` by code, or its nearest ancestor's.

    Every table has a row for ``internal`` (``LakeError``), so there always is one.
    """
    for cls in type(error).__mro__:
        code = cls.__dict__.get("code")
        if isinstance(code, str) and code in table:
            return table[code]
    return table[LakeError.code]


def summarise(exc: ValidationError, label: str = "") -> str:
    """pydantic's errors as one line: ``<label><field>: <message>; …`` (JSON syntax named)."""
    problems = []
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            problems.append(f"invalid JSON body: {error.get('ctx', {}).get('error', error['msg'])}")
            continue
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{label}{where}: {error['msg']}")
    return "; ".join(problems)
