"""Error → HTTP response, in one table: every error code's status, and the handlers.

``HTTP_STATUS`` maps each code of :mod:`flight_lake.errors` to its status (a code without a
row takes its ancestor's, see ``errors.mapped``); the body is always
``{"error": code, "detail": …}`` (plus ``line`` or ``retry_after`` where the error carries
them), with ``Retry-After`` when the error says when to come back. Starlette's own
``HTTPException`` (unknown route, wrong method) gets the same JSON shape.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flight_lake.errors import ERRORS_BY_CODE, Busy, LakeError, Unauthenticated, mapped
from flight_lake.http import guard, streams

log = structlog.get_logger()

HTTP_STATUS: dict[str, int] = {
    "internal": 500,
    "invalid_input": 400,
    "not_acceptable": 406,
    "unsupported_media_type": 415,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "too_many_partitions": 413,
    "timeout": 504,
    "cancelled": 499,  # gRPC's CANCELLED as HTTP (nginx's "client closed request")
    "busy": 503,
    "unavailable": 503,
    "storage_error": 502,
}
assert set(HTTP_STATUS) == set(ERRORS_BY_CODE)
# What Starlette raises itself, before any route runs.
_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}


def status_of(error: LakeError) -> int:
    return mapped(HTTP_STATUS, error)


async def lake_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LakeError)
    headers = {}
    if isinstance(exc, Busy):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = guard.WWW_AUTHENTICATE
    status = status_of(exc)
    if status >= 500:
        log.warning("http_error", error=exc.code, detail=exc.detail)
    return JSONResponse(exc.to_dict(), status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body: dict[str, Any] = {
        "error": _STARLETTE_CODES.get(exc.status_code, "http_error"),
        "detail": exc.detail,
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, streams.ResponseAborted):  # that one is logged where it happens
        log.error("http_internal_error", error=repr(exc))
    return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)


EXCEPTION_HANDLERS = {LakeError: lake_error, HTTPException: http_error, Exception: internal_error}
