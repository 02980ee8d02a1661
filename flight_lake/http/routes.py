"""The HTTP adapter: the lake's operations under ``/v1`` for curl users and scripts.

Each route decodes the request, calls one of the lake's services (off the event loop, as
they block) and encodes the answer; no route implements ingest or query itself. Errors are
translated in one place, :mod:`flight_lake.http.statuses`: ``LakeError`` → the status of its
code with the JSON body ``{"error": code, "detail": …}`` (``Retry-After`` when busy), and
Starlette's own ``HTTPException`` (unknown route 404, wrong method 405) → the same shape.
``docs/HTTP.md`` and ``/openapi.json`` describe every route.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from flight_lake.auth import Authenticator
from flight_lake.bodies import RegisterRequest, SqlRequest
from flight_lake.catalog import check_mode, check_name
from flight_lake.errors import InvalidInput, TooLarge, Unavailable, summarise
from flight_lake.http import guard, streams
from flight_lake.http.access_log import AccessLog
from flight_lake.http.formats import negotiate
from flight_lake.http.openapi import OPENAPI
from flight_lake.http.statuses import EXCEPTION_HANDLERS
from flight_lake.http.uploads import run_ingest, upload_body
from flight_lake.lake import Lake

log = structlog.get_logger()

MAX_JSON_BODY_BYTES = 1024 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)
ROUTE_OPERATIONS = {  # each route's row in the role table (auth/roles.py)
    "/v1/ingest": "ingest",
    "/v1/sql": "query",
    "/v1/catalog": "catalog.read",
    "/v1/catalog/register": "catalog.register",
    "/v1/catalog/{name}": "catalog.read",
    "/v1/storage/list": "storage.read",
    "/v1/storage/get/{key:path}": "storage.read",
}


def create_app(lake: Lake, authenticator: Authenticator | None = None) -> Starlette:
    """The Starlette application serving ``lake``; run it with ``HttpServer``.

    With an ``authenticator`` (users configured) every route but ``/health`` and
    ``/openapi.json`` needs credentials and a role (``http/guard.py``).
    """
    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/ingest", ingest, methods=["POST"]),
        Route("/v1/sql", sql, methods=["POST"]),
        Route("/v1/catalog", catalog_list, methods=["GET"]),
        Route("/v1/catalog/register", catalog_register, methods=["POST"]),
        Route("/v1/catalog/{name}", catalog_get, methods=["GET"]),
        Route("/v1/storage/list", storage_list, methods=["GET"]),
        Route("/v1/storage/get/{key:path}", storage_get, methods=["GET"]),
    ]
    if authenticator is not None:
        routes = guard.protect(routes, ROUTE_OPERATIONS, authenticator)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.lake = lake
    app.state.authenticator = authenticator
    return app


# -- routes ----------------------------------------------------------------------------


async def health(request: Request) -> Response:
    body = await run_in_threadpool(request.app.state.lake.health)
    if not getattr(request.state, "health_detail", True):  # guard: not an admin
        body = {"status": body["status"]}
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def ingest(request: Request) -> Response:
    lake = _serving(request)
    name = request.query_params.get("name")
    if not name:
        raise InvalidInput("missing query parameter 'name' (POST /v1/ingest?name=<dataset>)")
    check_name(name)
    mode = check_mode(request.query_params.get("mode", "create"))
    body = upload_body(request, lake.settings.ingest.max_upload_bytes)
    manifest = await run_ingest(functools.partial(lake.ingest.ingest_csv, name, mode), body)
    return JSONResponse(manifest.to_json_dict())


async def sql(request: Request) -> Response:
    lake = _serving(request)
    fmt = negotiate(request.headers.get("accept"))
    query = await _json_body(request, SqlRequest)
    result = await run_in_threadpool(streams.query_result, lake, query.sql, fmt)
    if result.rest is None:  # small: one body with Content-Length, no more thread hops
        return Response(result.head, media_type=fmt.media_type)
    return StreamingResponse(
        streams.in_threads(result.rest, head=result.head), media_type=fmt.media_type
    )


async def catalog_list(request: Request) -> Response:
    manifests = _serving(request).catalog.list()  # the same body as Flight's catalog.list
    return JSONResponse([manifest.to_json_dict() for manifest in manifests])


async def catalog_get(request: Request) -> Response:
    manifest = _serving(request).catalog.get(request.path_params["name"])
    return JSONResponse(manifest.to_json_dict())


async def catalog_register(request: Request) -> Response:
    lake = _serving(request)
    body = await _json_body(request, RegisterRequest)
    manifest = await run_in_threadpool(lake.catalog.register, body.name, body.keys, body.mode)
    return JSONResponse(manifest.to_json_dict())


async def storage_list(request: Request) -> Response:
    lake = _serving(request)
    prefix = request.query_params.get("prefix", "")
    objects = await run_in_threadpool(lake.storage.list, prefix)
    return JSONResponse({
        "prefix": prefix,
        "objects": [{"key": item.key, "size": item.size} for item in objects],
    })


async def storage_get(request: Request) -> Response:
    lake = _serving(request)
    key = request.path_params["key"]
    size, chunks = await run_in_threadpool(streams.stored_object, lake.storage, key)
    media_type = (
        "application/vnd.apache.parquet" if key.endswith(".parquet") else "application/octet-stream"
    )
    return StreamingResponse(
        streams.in_threads(chunks),
        media_type=media_type,
        headers={"Content-Length": str(size)},
    )


# -- helpers ---------------------------------------------------------------------------


def _serving(request: Request) -> Lake:
    lake: Lake = request.app.state.lake
    if lake.draining:
        raise Unavailable("the server is shutting down")
    return lake


async def _json_body(request: Request, model: type[ModelT]) -> ModelT:
    """Parse a small JSON body into ``model``; 413 past ``MAX_JSON_BODY_BYTES``, else 400."""
    pieces: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_JSON_BODY_BYTES:
            raise TooLarge(f"JSON body is over {MAX_JSON_BODY_BYTES} bytes")
        pieces.append(chunk)
    raw = b"".join(pieces)
    if not raw.strip():
        raise InvalidInput("empty body: send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(summarise(exc)) from exc
