"""The Flight server: thin methods that decode a request, call a service, encode the answer.

Verbs (docs/FLIGHT.md): DoPut ingests, GetFlightInfo + DoGet query or fetch dataset objects,
ListFlights lists datasets, DoAction/ListActions serve the catalog actions and ``health``.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import structlog

from flight_lake.auth import Authenticator
from flight_lake.bodies import (
    BeginRequest,
    CommitRequest,
    RegisterRequest,
    SqlRequest,
    TransactionRequest,
)
from flight_lake.catalog import Manifest
from flight_lake.errors import Cancelled, InvalidInput, LakeError
from flight_lake.flight import bearer
from flight_lake.flight.messages import (
    DatasetObjectTicket,
    EmptyBody,
    IngestCommand,
    NameBody,
    check_size,
    dumps,
    encode,
    parse,
    parse_ticket,
)
from flight_lake.flight.status import flight_errors, to_flight_error
from flight_lake.flightsql import FlightSql, permissions
from flight_lake.flightsql.grpc_status import sql_errors, sql_status
from flight_lake.lake import Lake
from flight_lake.result import Result
from flight_lake.upload_pace import ReadAhead, UploadPace
from flight_lake_client.protocol import CHUNK_SCHEMA, END_MARKER

log = structlog.get_logger()



@dataclass(frozen=True)
class ActionSpec:
    description: str
    body: type
    handler: Callable[[Lake, Any], Any]
    operation: str = "catalog.read"  # its row in the role table (auth/roles.py)


ACTIONS: dict[str, ActionSpec] = {
    "catalog.list": ActionSpec(
        "List every dataset's current manifest.", EmptyBody,
        lambda lake, _: [m.to_json_dict() for m in lake.catalog.list()]),
    "catalog.get": ActionSpec(
        'Read one dataset\'s manifest: {"name": …}.', NameBody,
        lambda lake, body: lake.catalog.get(body.name).to_json_dict()),
    "catalog.register": ActionSpec(
        'Commit Parquet objects already in storage: {"name": …, "keys": […], "mode": …}.',
        RegisterRequest,
        lambda lake, body: lake.catalog.register(body.name, body.keys, body.mode).to_json_dict(),
        "catalog.register"),
    "ingest.begin": ActionSpec(
        'Open a transaction for many files, one version: {"name": …, "mode": …}; '
        'DoPut each file with "transaction", then ingest.commit.', BeginRequest,
        lambda lake, body: lake.ingest.begin(body.name, body.mode, body.layout()).describe(
            lake.settings.ingest.staging_seconds), "ingest"),
    "ingest.commit": ActionSpec(
        'Commit every file staged in a transaction as one version: {"transaction": …, '
        '"files": n}.', CommitRequest,
        lambda lake, body: lake.ingest.commit(body.transaction, body.files).to_json_dict(),
        "ingest"),
    "ingest.abort": ActionSpec(
        'Drop a transaction and what it staged: {"transaction": …}.', TransactionRequest,
        lambda lake, body: {"aborted": lake.ingest.abort(body.transaction)}, "ingest"),
    "health": ActionSpec(
        "Server status, version, storage backend and dataset count (all but the status "
        "for admins only when users are configured).", EmptyBody,
        lambda lake, _: lake.health(), "health"),
}


class LakeFlightServer(flight.FlightServerBase):
    """Arrow Flight over one ``Lake``; listens as soon as it is constructed."""

    def __init__(self, lake: Lake, location: str, *,
                 authenticator: Authenticator | None = None, **kwargs: Any) -> None:
        self.lake = lake
        self.sql = FlightSql(lake, result_stream)  # the Flight SQL dialect (docs/FLIGHT.md)
        self.authenticator = authenticator
        middleware: dict[str, flight.ServerMiddlewareFactory] = {
            "log": FlightCallLogFactory(lake)}
        if authenticator is not None:
            middleware[bearer.MIDDLEWARE_KEY] = bearer.BearerFactory(authenticator)
            kwargs["auth_handler"] = bearer.HeaderHandshake()
        super().__init__(location, middleware=middleware, **kwargs)
        bound = f"{location.rsplit(':', 1)[0]}:{self.port}"
        own = lake.settings.flight.advertise_uri or bound
        # This server first, then its peers: the replicas a dataset's endpoints go to.
        self.replicas = [own, *(p for p in lake.settings.cluster.peers if p != own)]

    # -- ingest ----------------------------------------------------------------------

    @sql_status
    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        with sql_errors():
            raw = self._sized(descriptor.command, "command")
            sql_command = _sql_message(context, raw, self.authenticator)
            if sql_command is not None:
                with ReadAhead(reader.read_chunk, self._pace()) as chunks:
                    metadata = self.sql.do_put(sql_command, reader.schema,
                                               _batches(chunks, context),
                                               client=_client_address(context))
                writer.write(pa.py_buffer(metadata))
                return
        with flight_errors():
            command = parse(IngestCommand, raw, "ingest command")
            assert isinstance(command, IngestCommand)
            bearer.require(context, self.authenticator, "ingest")
            if command.format != "arrow" and not reader.schema.equals(CHUNK_SCHEMA):
                raise InvalidInput(
                    f"format {command.format} needs a stream with schema `chunk: binary`, got "
                    f"{reader.schema.to_string(show_schema_metadata=False)!r}"
                )
            if command.transaction is not None:
                if command.format == "arrow":
                    raise InvalidInput("a transaction stages files: send format file")
                if command.layout() is not None:
                    raise InvalidInput("a transaction's layout is given once, to ingest.begin")
                with ReadAhead(reader.read_chunk, self._pace()) as chunks:
                    staged = self.lake.ingest.stage(
                        command.transaction, command.file or command.name,
                        _csv_chunks(chunks, context, command.end_marker),
                        client=_client_address(context), name=command.name)
                writer.write(pa.py_buffer(dumps(staged.to_json_dict())))
                return
            with ReadAhead(reader.read_chunk, self._pace()) as chunks:
                if command.format != "arrow":
                    manifest = self.lake.ingest.ingest_csv(
                        command.name, command.mode,
                        _csv_chunks(chunks, context, command.end_marker),
                        client=_client_address(context), layout=command.layout())
                else:
                    manifest = self.lake.ingest.ingest_arrow(
                        command.name, command.mode, reader.schema,
                        _batches(chunks, context, command.end_marker),
                        client=_client_address(context), layout=command.layout())
            writer.write(pa.py_buffer(dumps(manifest.to_json_dict())))

    def _pace(self) -> UploadPace:
        return UploadPace(self.lake.settings.ingest)

    # -- query and fetch -------------------------------------------------------------

    @sql_status
    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        with sql_errors():
            raw = self._sized(descriptor.command, "command")
            sql_command = _sql_message(context, raw, self.authenticator)
            if sql_command is not None:
                return self.sql.get_flight_info(sql_command, descriptor)
        with flight_errors():
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                if len(descriptor.path) != 1:
                    raise InvalidInput("a dataset path has exactly one element: [name]")
                return self._dataset_info(self.lake.catalog.get(descriptor.path[0].decode()))
            command = parse(SqlRequest, raw, "query command")
            assert isinstance(command, SqlRequest)
            schema = self.lake.describe(command.sql)
            endpoint = flight.FlightEndpoint(encode(command), [])
            return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    @sql_status
    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        with sql_errors():
            raw = self._sized(ticket.ticket, "ticket")
            sql_ticket = _sql_message(context, raw, self.authenticator)
            if sql_ticket is not None:
                return self.sql.do_get(sql_ticket, context)
        with flight_errors():
            request = parse_ticket(raw)
            if isinstance(request, DatasetObjectTicket):
                result = self.lake.read_object(request.dataset, request.key)
            else:
                result = self.lake.read(request.sql)
            return result_stream(result)

    @sql_status
    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        with sql_errors():
            sql_command = _sql_message(context, self._sized(descriptor.command, "command"),
                                       self.authenticator)
            if sql_command is None:
                raise InvalidInput("GetSchema takes Flight SQL commands; use GetFlightInfo")
            return flight.SchemaResult(self.sql.get_schema(sql_command))

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        with flight_errors():
            manifests = self.lake.catalog.list()
        for manifest in manifests:
            yield self._dataset_info(manifest)

    # -- actions ---------------------------------------------------------------------

    @sql_status
    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[bytes]:
        if action.type in self.sql.actions:
            _name_call(context, action.type)
            with sql_errors():
                bearer.require(context, self.authenticator, permissions.operation(action.type))
                return iter(self.sql.do_action(action.type, action.body.to_pybytes()
                                               if action.body else b""))
        with flight_errors():
            spec = ACTIONS.get(action.type)
            if spec is None:
                raise InvalidInput(
                    f"unknown action {action.type!r}; actions: {', '.join(sorted(ACTIONS))}")
            bearer.require(context, self.authenticator, spec.operation)
            raw = action.body.to_pybytes() if action.body else b""
            body = parse(spec.body, self._sized(raw, f"{action.type} body"),
                         f"{action.type} body")
            result = spec.handler(self.lake, body)
            if action.type == "health" and not bearer.permits(
                    context, self.authenticator, "health.detail"):
                result = {"status": result["status"]}
        return iter([dumps(result)])

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [(name, spec.description) for name, spec in ACTIONS.items()] + [
            (name, description) for name, (description, _) in self.sql.actions.items()]

    # -- helpers ---------------------------------------------------------------------

    def _sized(self, raw: bytes | None, what: str) -> bytes:
        return check_size(raw or b"", self.lake.settings.flight.max_command_bytes, what)

    def _dataset_info(self, manifest: Manifest) -> flight.FlightInfo:
        """One endpoint per data object; with ``cluster.peers``, object ``i`` goes to replica
        ``i`` mod their number (this server first: no location, so "here")."""
        descriptor = flight.FlightDescriptor.for_path(manifest.name)
        endpoints = []
        for index, data_object in enumerate(manifest.objects):
            replica = index % len(self.replicas)
            ticket = encode(DatasetObjectTicket(dataset=manifest.name, key=data_object.key))
            endpoints.append(flight.FlightEndpoint(
                ticket, [self.replicas[replica]] if replica else []))
        return flight.FlightInfo(manifest.arrow_schema(), descriptor, endpoints,
                                 manifest.row_count, manifest.size_bytes)


def _sql_message(context: flight.ServerCallContext, raw: bytes | None,
                 authenticator: Authenticator | None) -> Any:
    """The Flight SQL message in a command or ticket (named in the call's log), or None;
    ``PermissionDenied`` if the caller's role may not send it."""
    message = FlightSql.command(raw or b"")
    if message is not None:
        _name_call(context, message.DESCRIPTOR.name)
        bearer.require(context, authenticator, permissions.operation(message.DESCRIPTOR.name))
    return message


def _name_call(context: flight.ServerCallContext, command: str) -> None:
    call_log = context.get_middleware("log")
    if isinstance(call_log, FlightCallLog):
        call_log.command = command


def _client_address(context: flight.ServerCallContext) -> str:
    """The caller's IP as HTTP names it (gRPC's ``ipv4:127.0.0.1:5000`` → ``127.0.0.1``,
    ``ipv6:%5B::1%5D:5000`` → ``::1``)."""
    peer = urllib.parse.unquote(context.peer())
    if peer.startswith(("ipv4:", "ipv6:")):
        peer = peer.split(":", 1)[1].rsplit(":", 1)[0]
    return peer.strip("[]")


def _csv_chunks(
    chunks: Iterable[flight.FlightStreamChunk], context: flight.ServerCallContext,
    end_marker: bool = False,
) -> Iterator[pa.Buffer]:
    for batch in _batches(chunks, context, end_marker):
        for value in batch.column(0):
            if value.is_valid:
                yield value.as_buffer()


def _batches(
    chunks: Iterable[flight.FlightStreamChunk], context: flight.ServerCallContext,
    end_marker: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The upload's batches from its chunks (a ``ReadAhead`` of the call's reader: a client
    that sends nothing for ``ingest.upload_idle_seconds`` gets ``QueryTimeout``)."""
    ended = False
    chunk_iterator = iter(chunks)
    while True:
        try:
            chunk = next(chunk_iterator)
        except StopIteration:
            # A client that dies mid-upload also ends the stream, and the call may not read
            # as cancelled yet: a client that promised END_MARKER tells the two apart for
            # sure; for others the cancelled flag is the best guess. A partial upload must
            # never be committed.
            if (end_marker and not ended) or context.is_cancelled():
                raise Cancelled("the client cancelled the upload before it ended") from None
            return
        except pa.ArrowException as exc:
            # The client went away or sent a broken stream: the ingest must clean up.
            raise InvalidInput(f"upload stream broken: {exc}") from exc
        if chunk.data is not None:
            yield chunk.data
        elif chunk.app_metadata is not None and chunk.app_metadata.to_pybytes() == END_MARKER:
            ended = True


def result_stream(result: Result) -> flight.FlightDataStream:
    """A read's result as Flight data: a table in memory from C++, else batch by batch."""
    table = result.table
    if table is not None:
        result.close()  # the answer is complete: nothing left to interrupt
        return flight.RecordBatchStream(table)  # C++ streams it, no Python per batch
    return flight.GeneratorStream(result.schema, _translated(result))


def _translated(result: Result) -> Iterator[pa.RecordBatch]:
    """Stream the result's batches, turning a LakeError mid-stream into a Flight error."""
    with result:
        try:
            yield from result.batches()
        except LakeError as exc:
            raise to_flight_error(exc) from exc


class FlightCallLogFactory(flight.ServerMiddlewareFactory):
    """One log event per call with its outcome and duration; refuses calls while draining."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def start_call(self, info: flight.CallInfo, headers: dict) -> FlightCallLog:
        with flight_errors():
            self.lake.check_serving()
        return FlightCallLog(info.method.name.lower())


class FlightCallLog(flight.ServerMiddleware):
    def __init__(self, method: str) -> None:
        self.method = method
        self.command: str | None = None  # the Flight SQL command or action, when there is one
        self.started = time.perf_counter()

    def call_completed(self, exception: BaseException | None) -> None:
        seconds = round(time.perf_counter() - self.started, 6)
        named = {"command": self.command} if self.command else {}
        if exception is None:
            log.info("flight_request", method=self.method, outcome="ok", seconds=seconds,
                     **named)
            return
        code = _error_code(exception)
        log.info("flight_request", method=self.method, outcome=code, seconds=seconds,
                 error=str(exception).split("\n", 1)[0][:300], **named)


def _error_code(exception: BaseException) -> str:
    info = getattr(exception, "extra_info", None)
    if info:
        import json

        try:
            return str(json.loads(info).get("error", "error"))
        except ValueError:
            pass
    return type(exception).__name__
