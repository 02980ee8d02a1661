"""One structlog event per HTTP request: method, path, status and duration.

A plain ASGI middleware (not ``BaseHTTPMiddleware``), so streamed bodies pass straight
through and the duration covers the whole response, up to its last byte. Each request
gets an id, bound into structlog's context (so service logs made while serving it carry
it too) and returned in ``X-Request-Id``.
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        failure: str | None = None
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_status)
            except BaseException as exc:  # logged below, then the server's to handle
                failure = type(exc).__name__
                raise
            finally:
                extra = {"failed": failure} if failure else {}
                event = log.warning if status >= 500 or failure else log.info
                event(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    seconds=round(time.perf_counter() - started, 4),
                    **extra,
                )
