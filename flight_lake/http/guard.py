"""HTTP authentication and the role check, in one place for every route.

When users are configured, ``protect`` wraps each route with the operation it performs
(from ``routes.ROUTE_OPERATIONS``; a route without one refuses to start, so none is left
open by mistake). A request carries ``Authorization: Basic …`` (curl ``-u``) or
``Bearer <token>``; ``POST /v1/auth/token`` trades Basic credentials for a token, so
scrypt runs once per login, not per request. Missing or bad credentials → 401 with
``WWW-Authenticate``; a role too low → 403 naming the role it needs. ``/health`` needs no
credentials but shows only the status to anyone not an admin; ``/openapi.json`` is open and
then also describes the token route and the two security schemes.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from flight_lake.auth import Authenticator, Identity

Endpoint = Callable[[Request], Awaitable[Response]]
WWW_AUTHENTICATE = 'Basic realm="flight_lake", charset="UTF-8", Bearer realm="flight_lake"'
OPEN_PATHS = frozenset({"/openapi.json"})
HEALTH_PATH = "/health"
TOKEN_PATH = "/v1/auth/token"


def protect(routes: list[BaseRoute], operations: Mapping[str, str],
            authenticator: Authenticator) -> list[BaseRoute]:
    """``routes`` with each endpoint behind its operation's role, plus the token route."""
    guarded: list[BaseRoute] = []
    for route in routes:
        assert isinstance(route, Route)
        methods = sorted(route.methods or ())
        if route.path in OPEN_PATHS:
            guarded.append(Route(route.path, openapi, methods=methods))
        elif route.path == HEALTH_PATH:
            guarded.append(Route(route.path, _health(route.endpoint), methods=methods))
        elif route.path in operations:
            endpoint = _guarded(route.endpoint, operations[route.path])
            guarded.append(Route(route.path, endpoint, methods=methods))
        else:
            raise RuntimeError(f"route {route.path} has no operation in ROUTE_OPERATIONS")
    guarded.append(Route(TOKEN_PATH, token, methods=["POST"]))
    return guarded


async def identify(request: Request, operation: str) -> Identity:
    """The caller's identity from its ``Authorization`` header (scrypt off the loop)."""
    authenticator: Authenticator = request.app.state.authenticator
    header = request.headers.get("authorization")
    address = request.client.host if request.client else None
    if header is not None and header[:6].lower() == "basic ":
        return await run_in_threadpool(
            authenticator.identify, header, address=address, operation=operation)
    return authenticator.identify(header, address=address, operation=operation)


def _guarded(endpoint: Endpoint, operation: str) -> Endpoint:
    async def guarded(request: Request) -> Response:
        identity = await identify(request, operation)
        address = request.client.host if request.client else None
        request.app.state.authenticator.authorize(identity, operation, address=address)
        request.state.identity = identity
        return await endpoint(request)

    guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
    return guarded


def _health(endpoint: Endpoint) -> Endpoint:
    async def health(request: Request) -> Response:
        detail = False
        if "authorization" in request.headers:
            identity = await identify(request, "health")
            detail = request.app.state.authenticator.permits(identity, "health.detail")
        request.state.health_detail = detail
        return await endpoint(request)

    return health


def secured_openapi(described: dict[str, Any]) -> dict[str, Any]:
    """``described`` with the token route, Basic and Bearer schemes, and the 401/403 answers."""
    document = copy.deepcopy(described)
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, item in document["paths"].items():
        if path in OPEN_PATHS or path == HEALTH_PATH:
            item["get"]["security"] = []
            continue
        for operation in item.values():
            operation["responses"]["401"] = {
                "description": "no or bad credentials (WWW-Authenticate says which)", **error}
            operation["responses"]["403"] = {
                "description": "the caller's role may not do this; the detail names the role "
                               "it needs", **error}
    document["paths"][TOKEN_PATH] = {"post": {
        "summary": "Trade Basic credentials (or a token) for a fresh bearer token",
        "security": [{"basic": []}, {"bearer": []}],
        "responses": {
            "200": {"description": "a token for the Authorization: Bearer header",
                    "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string", "enum": ["Bearer"]},
                            "expires_in": {"type": "integer"},
                            "expires_at": {"type": "integer"},
                            "user": {"type": "string"}, "role": {"type": "string"}}}}}},
            "401": {"description": "wrong user name or password", **error},
            "503": {"description": "too many failed logins from this address (Retry-After)",
                    **error}}}}
    document["components"]["securitySchemes"] = {
        "basic": {"type": "http", "scheme": "basic"},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    document["security"] = [{"basic": []}, {"bearer": []}]
    return document


async def openapi(request: Request) -> Response:
    return JSONResponse(secured_openapi(request.app.state.openapi))


async def token(request: Request) -> Response:
    """``POST /v1/auth/token``: Basic credentials (or a valid token) → a fresh token."""
    identity = await identify(request, "login")
    access_token, expires_at = request.app.state.authenticator.issue(identity)
    ttl = request.app.state.authenticator.settings.token_ttl_seconds
    return JSONResponse(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl,
         "expires_at": expires_at, "user": identity.user, "role": identity.role.label},
        headers={"Cache-Control": "no-store"},
    )
