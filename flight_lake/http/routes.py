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
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from flight_lake.auth import Authenticator
from flight_lake.bodies import BeginRequest, RegisterRequest, SqlRequest
from flight_lake.catalog import Manifest, check_mode, check_name
from flight_lake.errors import InvalidInput, TooLarge, Unavailable, summarise
from flight_lake.http import guard, streams
from flight_lake.http.access_log import AccessLog
from flight_lake.http.answers import (
    FileStaged,
    Health,
    StorageListing,
    StoredObject,
    TransactionAborted,
    TransactionOpened,
)
from flight_lake.http.formats import FORMATS, JSON, negotiate
from flight_lake.http.openapi import DatasetName, Endpoint, Parameter, describe
from flight_lake.http.statuses import EXCEPTION_HANDLERS
from flight_lake.http.uploads import run_ingest, upload_body
from flight_lake.lake import Lake
from flight_lake.layout import layout_of
from flight_lake.upload_pace import UploadPace
from flight_lake_client.protocol import Mode

log = structlog.get_logger()

ModelT = TypeVar("ModelT", bound=BaseModel)

def create_app(lake: Lake, authenticator: Authenticator | None = None) -> Starlette:
    """The Starlette application serving ``lake``; run it with ``HttpServer``.

    With an ``authenticator`` (users configured) every route but ``/health`` and
    ``/openapi.json`` needs credentials and a role (``http/guard.py``).
    """
    routes: list[BaseRoute] = [
        Route(endpoint.path, endpoint.handler, methods=[endpoint.method])
        for endpoint in ENDPOINTS
    ]
    if authenticator is not None:
        routes = guard.protect(routes, ROUTE_OPERATIONS, authenticator)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.lake = lake
    app.state.openapi = OPENAPI
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
    transaction = request.query_params.get("transaction")
    if not name and transaction is None:
        raise InvalidInput("missing query parameter 'name' (POST /v1/ingest?name=<dataset>)")
    if name:
        check_name(name)
    mode = check_mode(request.query_params.get("mode", "create"))
    layout = layout_of(request.query_params.getlist("partition_by") or None,
                       request.query_params.getlist("sort_by") or None)
    body = upload_body(request, lake.settings.ingest.max_upload_bytes)
    client = request.client.host if request.client is not None else None
    if transaction is not None:
        if layout is not None:
            raise InvalidInput("a transaction's layout is given once, to POST /v1/transactions")
        label = request.query_params.get("file")
        if not label:
            raise InvalidInput("missing query parameter 'file' (the file's name) beside "
                               "'transaction'")
        staged = await run_ingest(functools.partial(
            lake.ingest.stage, transaction, label, client=client, name=name or None), body,
            UploadPace(lake.settings.ingest))
        return JSONResponse(FileStaged(**staged.to_json_dict()).model_dump())
    assert name is not None
    manifest = await run_ingest(functools.partial(lake.ingest.ingest_csv, name, mode,
                                                  client=client, layout=layout), body,
                                UploadPace(lake.settings.ingest))
    return JSONResponse(manifest.to_json_dict())


async def transaction_begin(request: Request) -> Response:
    lake = _serving(request)
    body = await _json_body(request, BeginRequest)
    transaction = await run_in_threadpool(lake.ingest.begin, body.name, body.mode,
                                          body.layout())
    opened = transaction.describe(lake.settings.ingest.staging_seconds)
    return JSONResponse(TransactionOpened(**opened).model_dump())


async def transaction_commit(request: Request) -> Response:
    lake = _serving(request)
    files = request.query_params.get("files")
    if files is not None and not files.isdigit():
        raise InvalidInput(f"query parameter 'files' must be a count, not {files!r}")
    manifest = await run_in_threadpool(lake.ingest.commit, request.path_params["id"],
                                       int(files) if files is not None else None)
    return JSONResponse(manifest.to_json_dict())


async def transaction_abort(request: Request) -> Response:
    lake = _serving(request)
    aborted = await run_in_threadpool(lake.ingest.abort, request.path_params["id"])
    return JSONResponse(TransactionAborted(aborted=aborted).model_dump())


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
    listing = StorageListing(prefix=prefix, objects=[
        StoredObject(key=item.key, size=item.size) for item in objects])
    return JSONResponse(listing.model_dump())


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
    """Parse a small JSON body into ``model``; 413 past ``http.max_json_body_bytes``, else 400."""
    limit = request.app.state.lake.settings.http.max_json_body_bytes
    pieces: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise TooLarge(f"the JSON body is over http.max_json_body_bytes ({limit} bytes)")
        pieces.append(chunk)
    raw = b"".join(pieces)
    if not raw.strip():
        raise InvalidInput("empty body: send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(summarise(exc)) from exc


# -- the route table -------------------------------------------------------------------

_BINARY = {"schema": {"type": "string", "format": "binary"}}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/health", health, "Service status at a glance", answer=Health, extra={
        "responses": {"503": {"description": "shutting down, or the storage stopped answering",
                              "content": {"application/json": {"schema": {
                                  "$ref": "#/components/schemas/Health"}}}}}}),
    Endpoint("GET", "/openapi.json", openapi, "This description", answer=dict[str, Any]),
    Endpoint(
        "POST", "/v1/ingest", ingest, "Upload a file as a new version of a dataset",
        answer=Manifest | FileStaged, operation="ingest",
        errors=("invalid_input", "unsupported_media_type", "not_found", "conflict",
                "too_large", "too_many_partitions", "storage_error", "busy", "unavailable"),
        query=(Parameter("name", DatasetName, description="the dataset (required unless "
                                                         "`transaction` is given)"),
               Parameter("mode", Mode, description="default: create"),
               Parameter("partition_by", str, description=(
                   "columns to partition by, comma-separated or repeated (Hive-style "
                   "folders); left out on append: the dataset's layout, else none")),
               Parameter("sort_by", str, description=(
                   "columns to sort each upload by, comma-separated or repeated; left out "
                   "on append: the dataset's layout, else none")),
               Parameter("transaction", str, description=(
                   "stage the file into this transaction (POST /v1/transactions, which "
                   "takes the layout) instead of committing it; the answer is a FileStaged")),
               Parameter("file", str, description="the file's name, for errors "
                                                  "(with `transaction`)")),
        description="Multipart with a `file` part (`curl -F file=@x.csv`) or the raw file "
                    "(`--data-binary @x.csv -H 'Content-Type: text/csv'`): CSV (plain, gzip, "
                    "zstd), Parquet or Arrow IPC, told apart by their first bytes. Streamed.",
        extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}},
            "text/csv": _BINARY, "application/octet-stream": _BINARY}}}),
    Endpoint(
        "POST", "/v1/transactions", transaction_begin,
        "Open a transaction: many files, committed once as one version",
        body=BeginRequest, answer=TransactionOpened, operation="ingest",
        errors=("invalid_input", "not_found", "busy", "unavailable"),
        description="Stage each file with `POST /v1/ingest?transaction=<id>&file=<name>` "
                    "(several at once), then commit. All files or none."),
    Endpoint(
        "POST", "/v1/transactions/{id}/commit", transaction_commit,
        "Commit every file staged in a transaction as one version",
        answer=Manifest, operation="ingest",
        errors=("invalid_input", "not_found", "conflict", "storage_error"),
        query=(Parameter("files", int, description="how many files were staged (checked)"),),
        path_params=(Parameter("id", str, description="the transaction"),)),
    Endpoint(
        "DELETE", "/v1/transactions/{id}", transaction_abort,
        "Drop a transaction and every file staged in it", answer=TransactionAborted,
        operation="ingest", errors=("not_found",),
        path_params=(Parameter("id", str, description="the transaction"),)),
    Endpoint(
        "POST", "/v1/sql", sql, "Run one read-only SQL statement over the datasets",
        body=SqlRequest, operation="query",
        errors=("invalid_input", "not_acceptable", "permission_denied", "not_found",
                "too_large", "unavailable", "timeout"),
        extra={"responses": {"200": {
            "description": "the result, in the format the Accept header picks",
            "content": {fmt.media_type: ({"schema": {"type": "array",
                                                     "items": {"type": "object"}}}
                                         if fmt is JSON else _BINARY) for fmt in FORMATS}}}}),
    Endpoint("GET", "/v1/catalog", catalog_list, "Every dataset with its current manifest",
             answer=list[Manifest], operation="catalog.read"),
    Endpoint(
        "POST", "/v1/catalog/register", catalog_register,
        "Commit Parquet objects already under datasets/<name>/ as a version",
        body=RegisterRequest, answer=Manifest, operation="catalog.register",
        errors=("invalid_input", "not_found", "conflict", "too_large", "storage_error")),
    Endpoint("GET", "/v1/catalog/{name}", catalog_get, "One dataset's current manifest",
             answer=Manifest, operation="catalog.read", errors=("invalid_input", "not_found"),
             path_params=(Parameter("name", DatasetName),)),
    Endpoint("GET", "/v1/storage/list", storage_list,
             "Objects under a prefix (read-only, for operators)", answer=StorageListing,
             operation="storage.read", errors=("invalid_input", "storage_error"),
             query=(Parameter("prefix", str, description="default: the whole storage"),)),
    Endpoint(
        "GET", "/v1/storage/get/{key:path}", storage_get,
        "One object's bytes, streamed (read-only, for operators)", operation="storage.read",
        errors=("invalid_input", "not_found", "storage_error"),
        path_params=(Parameter("key", str, description="a key under the storage root; "
                                                       "may contain /"),),
        extra={"responses": {"200": {"description": "the object", "content": {
            "application/octet-stream": _BINARY}}}}),
]
ROUTE_OPERATIONS = {  # each route's row in the role table (auth/roles.py)
    endpoint.path: endpoint.operation for endpoint in ENDPOINTS if endpoint.operation
}
OPENAPI = describe(ENDPOINTS)
