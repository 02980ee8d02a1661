"""The Flight server: thin methods that decode a request, call a service, encode the answer.

Verbs (DESIGN.md): DoPut ingests, GetFlightInfo + DoGet query or fetch dataset objects,
ListFlights lists datasets, DoAction/ListActions serve the catalog actions and ``health``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import structlog

from flight_lake.app import Lake
from flight_lake.catalog import Manifest
from flight_lake.errors import InvalidInput, LakeError, NotFound, Unavailable
from flight_lake.flight.commands import (
    DatasetObjectTicket,
    EmptyBody,
    IngestCommand,
    NameBody,
    RegisterBody,
    SqlCommand,
    dumps,
    encode,
    parse,
    parse_ticket,
)
from flight_lake.flight.errors import flight_errors, to_flight_error
from flight_lake.object_cache import ObjectCache

log = structlog.get_logger()

CHUNK_SCHEMA = pa.schema([("chunk", pa.binary())])
# `SELECT * FROM <dataset>`, which the object cache may answer (see _whole_dataset).
_NAME = r"[a-z_][a-z0-9_]{0,62}"
_SELECT_ALL = re.compile(
    rf'\s*select\s+\*\s+from\s+(?:"(?P<quoted>{_NAME})"|(?P<bare>{_NAME}))\s*;?\s*\Z',
    re.IGNORECASE)


@dataclass(frozen=True)
class ActionSpec:
    description: str
    body: type
    handler: Callable[[Lake, Any], Any]


ACTIONS: dict[str, ActionSpec] = {
    "catalog.list": ActionSpec(
        "List every dataset's current manifest.", EmptyBody,
        lambda lake, _: [m.to_json_dict() for m in lake.catalog.list()]),
    "catalog.get": ActionSpec(
        'Read one dataset\'s manifest: {"name": …}.', NameBody,
        lambda lake, body: lake.catalog.get(body.name).to_json_dict()),
    "catalog.register": ActionSpec(
        'Commit Parquet objects already in storage: {"name": …, "keys": […], "mode": …}.',
        RegisterBody,
        lambda lake, body: lake.catalog.register(body.name, body.keys, body.mode).to_json_dict()),
    "health": ActionSpec(
        "Server status, version, storage backend and dataset count.", EmptyBody,
        lambda lake, _: lake.health()),
}


class LakeFlightServer(flight.FlightServerBase):
    """Arrow Flight over one ``Lake``; listens as soon as it is constructed."""

    def __init__(self, lake: Lake, location: str, **kwargs: Any) -> None:
        self.lake = lake
        self.objects = ObjectCache(lake.storage, lake.settings.flight.object_cache_bytes)
        # dataset -> (manifest version, schema of SELECT * if the cache may answer it)
        self._scan_schemas: dict[str, tuple[int, pa.Schema | None]] = {}
        middleware = {"log": RequestLogFactory(lake)}
        super().__init__(location, middleware=middleware, **kwargs)

    # -- ingest ----------------------------------------------------------------------

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        with flight_errors():
            command = parse(IngestCommand, descriptor.command or b"", "ingest command")
            assert isinstance(command, IngestCommand)
            if command.format == "csv":
                if not reader.schema.equals(CHUNK_SCHEMA):
                    raise InvalidInput(
                        "format csv needs a stream with schema `chunk: binary`, got "
                        f"{reader.schema.to_string(show_schema_metadata=False)!r}"
                    )
                manifest = self.lake.ingest.ingest_csv(
                    command.name, command.mode, _csv_chunks(reader, context))
            else:
                manifest = self.lake.ingest.ingest_arrow(
                    command.name, command.mode, reader.schema, _batches(reader, context))
            writer.write(pa.py_buffer(dumps(manifest.to_json_dict())))

    # -- query and fetch -------------------------------------------------------------

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        with flight_errors():
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                if len(descriptor.path) != 1:
                    raise InvalidInput("a dataset path has exactly one element: [name]")
                return self._dataset_info(self.lake.catalog.get(descriptor.path[0].decode()))
            command = parse(SqlCommand, descriptor.command or b"", "query command")
            assert isinstance(command, SqlCommand)
            schema = self.lake.query.schema(command.sql)
            endpoint = flight.FlightEndpoint(encode(command), [])
            return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        with flight_errors():
            request = parse_ticket(ticket.ticket)
            if isinstance(request, SqlCommand):
                whole = self._whole_dataset(request.sql)
                if whole is not None:
                    manifest, schema = whole
                    return self._objects_stream(schema, [o.key for o in manifest.objects])
                reader = self.lake.query.execute(request.sql)
                return flight.GeneratorStream(reader.schema, _translated(reader))
            return self._object_stream(request)

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        with flight_errors():
            manifests = self.lake.catalog.list()
        for manifest in manifests:
            yield self._dataset_info(manifest)

    # -- actions ---------------------------------------------------------------------

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        with flight_errors():
            spec = ACTIONS.get(action.type)
            if spec is None:
                raise InvalidInput(
                    f"unknown action {action.type!r}; actions: {', '.join(sorted(ACTIONS))}")
            body = parse(spec.body, action.body.to_pybytes() if action.body else b"",
                         f"{action.type} body")
            result = spec.handler(self.lake, body)
        return iter([dumps(result)])

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [(name, spec.description) for name, spec in ACTIONS.items()]

    # -- helpers ---------------------------------------------------------------------

    def _dataset_info(self, manifest: Manifest) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_path(manifest.name)
        endpoints = [
            flight.FlightEndpoint(encode(DatasetObjectTicket(dataset=manifest.name, key=o.key)), [])
            for o in manifest.objects
        ]
        return flight.FlightInfo(manifest.arrow_schema(), descriptor, endpoints,
                                 manifest.row_count, manifest.size_bytes)

    def _object_stream(self, request: DatasetObjectTicket) -> flight.FlightDataStream:
        manifest = self.lake.catalog.get(request.dataset)
        if request.key not in {o.key for o in manifest.objects}:
            raise NotFound(f"{request.key} is not an object of dataset {request.dataset}")
        return self._objects_stream(manifest.arrow_schema(), [request.key])

    def _objects_stream(self, schema: pa.Schema, keys: list[str]) -> flight.FlightDataStream:
        """Data objects in order: from memory when all are cached, else decoded as they go."""
        tables = [self.objects.get(key) for key in keys]
        if all(table is not None for table in tables):
            whole = [_conform(table, schema) for table in tables if table is not None]
            # C++ streams it, no Python per batch: the bare server's path.
            return flight.RecordBatchStream(
                pa.concat_tables(whole) if whole else schema.empty_table())
        batches = self._object_batches(schema, keys, tables)
        return flight.GeneratorStream(schema, _translated(batches))

    def _object_batches(self, schema: pa.Schema, keys: list[str],
                        tables: list[pa.Table | None]) -> Iterator[pa.RecordBatch]:
        for key, table in zip(keys, tables, strict=True):
            if table is None:
                for batch in self.objects.batches(key):
                    yield _conform(batch, schema)
            else:
                yield from _conform(table, schema).to_batches()

    def _whole_dataset(self, sql: str) -> tuple[Manifest, pa.Schema] | None:
        """For ``SELECT * FROM <dataset>``: its manifest and result schema, else None.

        Such a query's answer is the dataset's objects in order, which the object cache
        serves without DuckDB. Only when DuckDB would answer with the very same schema
        (checked once per dataset version) — otherwise DuckDB answers as for any query.
        """
        match = _SELECT_ALL.match(sql)
        if match is None:
            return None
        name = (match.group("quoted") or match.group("bare")).lower()
        try:
            manifest = self.lake.catalog.get(name)
        except NotFound:
            return None  # DuckDB gives the error (or finds a table function)
        known = self._scan_schemas.get(name)
        if known is None or known[0] != manifest.version:
            schema = self.lake.query.schema(sql)
            same = schema.equals(manifest.arrow_schema(), check_metadata=False)
            known = (manifest.version, schema if same else None)
            self._scan_schemas[name] = known
        return None if known[1] is None else (manifest, known[1])


def _csv_chunks(
    reader: flight.MetadataRecordBatchReader, context: flight.ServerCallContext
) -> Iterator[pa.Buffer]:
    for batch in _batches(reader, context):
        for value in batch.column(0):
            if value.is_valid:
                yield value.as_buffer()


def _batches(
    reader: flight.MetadataRecordBatchReader, context: flight.ServerCallContext
) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            # A client that dies mid-upload also ends the stream; only a cancelled call
            # tells the two apart, and a partial upload must never be committed.
            if context.is_cancelled():
                raise InvalidInput("the client went away before the upload ended") from None
            return
        except pa.ArrowException as exc:
            # The client went away or sent a broken stream: the ingest must clean up.
            raise InvalidInput(f"upload stream broken: {exc}") from exc
        if chunk.data is not None:
            yield chunk.data


def _conform(data: pa.Table | pa.RecordBatch, schema: pa.Schema,
             ) -> pa.Table | pa.RecordBatch:
    """``data`` under ``schema`` (same names and types; metadata may differ): no copy."""
    return data if data.schema.equals(schema) else data.cast(schema)


def _translated(batches: Iterator[pa.RecordBatch] | pa.RecordBatchReader,
                ) -> Iterator[pa.RecordBatch]:
    """Stream batches, turning a LakeError mid-stream into a Flight error."""
    try:
        yield from batches
    except LakeError as exc:
        raise to_flight_error(exc) from exc
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


class RequestLogFactory(flight.ServerMiddlewareFactory):
    """One log event per call with its outcome and duration; refuses calls while draining."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def start_call(self, info: flight.CallInfo, headers: dict) -> RequestLog:
        if self.lake.draining:
            raise to_flight_error(Unavailable("server is shutting down"))
        return RequestLog(info.method.name.lower())


class RequestLog(flight.ServerMiddleware):
    def __init__(self, method: str) -> None:
        self.method = method
        self.started = time.perf_counter()

    def call_completed(self, exception: BaseException | None) -> None:
        seconds = round(time.perf_counter() - self.started, 6)
        if exception is None:
            log.info("flight_request", method=self.method, outcome="ok", seconds=seconds)
            return
        code = _error_code(exception)
        log.info("flight_request", method=self.method, outcome=code, seconds=seconds,
                 error=str(exception).split("\n", 1)[0][:300])


def _error_code(exception: BaseException) -> str:
    info = getattr(exception, "extra_info", None)
    if info:
        import json

        try:
            return str(json.loads(info).get("error", "error"))
        except ValueError:
            pass
    return type(exception).__name__
