"""Flight SQL requests onto the lake: decode the message, call the lake, encode the answer.

The Flight server hands this class every descriptor, ticket, DoPut and action that carries
a Flight SQL message (:mod:`flight_lake.flightsql.wire`). Queries go through the lake's
read path (``describe`` for schemas, ``read`` for data, ``cancel`` by read id), uploads
through the lake's ingest, so the guard, timeout, caches, limits and busy slots are the
same as on the JSON dialect. Nothing here runs SQL of its own making except the engine
lists of GetSqlInfo, which are ordinary read-only queries on that same path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import structlog
from google.protobuf.message import DecodeError, Message

from flight_lake.catalog import Mode
from flight_lake.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from flight_lake.flightsql import flight_session_pb2 as session_pb2
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2
from flight_lake.flightsql import metadata
from flight_lake.flightsql.call_watch import CallWatch
from flight_lake.flightsql.sql_info import SCHEMA as SQL_INFO_SCHEMA
from flight_lake.flightsql.sql_info import SqlInfo
from flight_lake.flightsql.statements import PreparedStatements
from flight_lake.flightsql.wire import pack, unpack, unpack_as
from flight_lake.lake import Lake
from flight_lake.layout import layout_of
from flight_lake.query_cache import sql_identifier
from flight_lake.result import Result

log = structlog.get_logger()

# What a read becomes on the wire: the server's own encoder of a read's answer.
StreamEncoder = Callable[[Result], flight.FlightDataStream]

MAX_BATCH_BYTES = 4 * 1024 * 1024  # per record batch sent to a Flight SQL client
_READ_ONLY = ("the lake is read-only over SQL: data changes only through ingest "
              "(Flight SQL bulk ingest, e.g. ADBC's adbc_ingest, or DoPut)")
_TableDefinition = sql_pb2.CommandStatementIngest.TableDefinitionOptions


@dataclass(frozen=True)
class _Metadata:
    """A metadata command: its fixed result schema and how to compute its rows."""

    schema: Callable[[Message], pa.Schema]
    rows: Callable[[FlightSql, Message], pa.Table]


_METADATA: dict[type[Message], _Metadata] = {
    sql_pb2.CommandGetSqlInfo: _Metadata(
        lambda _: SQL_INFO_SCHEMA, lambda sql, command: sql.sql_info.table(command.info)),
    sql_pb2.CommandGetCatalogs: _Metadata(
        lambda _: metadata.CATALOGS_SCHEMA, lambda sql, _: metadata.catalogs()),
    sql_pb2.CommandGetDbSchemas: _Metadata(
        lambda _: metadata.DB_SCHEMAS_SCHEMA, lambda sql, command: metadata.db_schemas(command)),
    sql_pb2.CommandGetTables: _Metadata(
        lambda command: (metadata.TABLES_WITH_SCHEMA_SCHEMA if command.include_schema
                         else metadata.TABLES_SCHEMA),
        lambda sql, command: sql.tables(command)),
    sql_pb2.CommandGetTableTypes: _Metadata(
        lambda _: metadata.TABLE_TYPES_SCHEMA, lambda sql, _: metadata.table_types()),
    sql_pb2.CommandGetXdbcTypeInfo: _Metadata(
        lambda _: metadata.XDBC_TYPE_INFO_SCHEMA,
        lambda sql, command: metadata.xdbc_type_info(command)),
    sql_pb2.CommandGetPrimaryKeys: _Metadata(
        lambda _: metadata.PRIMARY_KEYS_SCHEMA, lambda sql, _: metadata.primary_keys()),
    **dict.fromkeys(
        (sql_pb2.CommandGetExportedKeys, sql_pb2.CommandGetImportedKeys,
         sql_pb2.CommandGetCrossReference),
        _Metadata(lambda _: metadata.FOREIGN_KEYS_SCHEMA, lambda sql, _: metadata.foreign_keys())),
}


class FlightSql:
    """Serves the Flight SQL dialect on the lake's Flight server."""

    def __init__(self, lake: Lake, encode: StreamEncoder) -> None:
        self.lake = lake
        self.encode = encode
        self.statements = PreparedStatements()
        self.call_watch = CallWatch(lake.cancel)
        self.sql_info: SqlInfo = SqlInfo(self._strings)
        self.actions: dict[str, tuple[str, Callable[[bytes], list[bytes]]]] = {
            "CreatePreparedStatement": (
                "Flight SQL: prepare a statement (its result and parameter schemas).",
                self._create_prepared_statement),
            "ClosePreparedStatement": (
                "Flight SQL: forget a prepared statement.", self._close_prepared_statement),
            "CancelFlightInfo": (
                "Stop the running query of a FlightInfo.", self._cancel_flight_info),
            "CancelQuery": (
                "Flight SQL (deprecated): stop the running query of a FlightInfo.",
                self._cancel_query),
            "SetSessionOptions": (
                "Session options: none are supported; each is reported as invalid.",
                self._set_session_options),
            "GetSessionOptions": (
                "Session options: always empty.", self._get_session_options),
            "CloseSession": ("Close the session (there is no state to drop).",
                             self._close_session),
        }

    # -- descriptors -------------------------------------------------------------------

    @staticmethod
    def command(raw: bytes) -> Message | None:
        """The Flight SQL message in a descriptor command or ticket, or None for JSON."""
        return unpack(raw)

    def get_flight_info(self, command: Message, descriptor: flight.FlightDescriptor,
                        ) -> flight.FlightInfo:
        if type(command) in _METADATA:
            spec = _METADATA[type(command)]
            endpoint = flight.FlightEndpoint(pack(command), [])
            return flight.FlightInfo(spec.schema(command), descriptor, [endpoint], -1, -1)
        sql = self._statement_sql(command)
        schema = self.lake.describe(sql)
        handle = json.dumps({"id": uuid.uuid4().hex, "sql": sql}).encode()
        ticket = pack(sql_pb2.TicketStatementQuery(statement_handle=handle))
        return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)

    def get_schema(self, command: Message) -> pa.Schema:
        if type(command) in _METADATA:
            return _METADATA[type(command)].schema(command)
        return self.lake.describe(self._statement_sql(command))

    def _statement_sql(self, command: Message) -> str:
        if isinstance(command, sql_pb2.CommandStatementQuery):
            _refuse_transaction(command)
            return command.query
        if isinstance(command, sql_pb2.CommandPreparedStatementQuery):
            return self.statements.get(command.prepared_statement_handle).statement()
        if isinstance(command, sql_pb2.CommandStatementSubstraitPlan):
            raise InvalidInput("Substrait plans are not supported; send SQL")
        raise InvalidInput(f"{command.DESCRIPTOR.name} is not a query command")

    # -- tickets -----------------------------------------------------------------------

    def do_get(self, message: Message, context: flight.ServerCallContext,
               ) -> flight.FlightDataStream:
        if type(message) in _METADATA:
            return flight.RecordBatchStream(_METADATA[type(message)].rows(self, message))
        if not isinstance(message, sql_pb2.TicketStatementQuery):
            raise InvalidInput(f"{message.DESCRIPTOR.name} is not a Flight SQL ticket")
        try:
            handle = json.loads(message.statement_handle)
            sql, read_id = handle["sql"], str(handle["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput("malformed statement ticket") from exc
        # watched from the start: DuckDB may compute the whole answer before the first batch
        token = self.call_watch.watch(context, read_id)
        try:
            result = self.lake.read(sql, read_id=read_id)
        except BaseException:
            self.call_watch.forget(token)
            raise
        if result.table is not None:  # already whole: nothing left to cancel
            self.call_watch.forget(token)
            return self.encode(_bounded(result))
        return self.encode(_bounded(result, on_close=lambda: self.call_watch.forget(token)))

    def tables(self, command: sql_pb2.CommandGetTables) -> pa.Table:
        names = [manifest.name for manifest in self.lake.catalog.list()]
        return metadata.tables(
            command, names,
            lambda name: self.lake.describe(f"SELECT * FROM {sql_identifier(name)}"))

    # -- DoPut -------------------------------------------------------------------------

    def do_put(self, message: Message, schema: pa.Schema,
               batches: Iterator[pa.RecordBatch], client: str | None = None) -> bytes:
        """Ingest (taking a slot of ``client``, the caller's address, like any upload), or
        bind parameters; returns the PutResult metadata to send back."""
        if isinstance(message, sql_pb2.CommandStatementIngest):
            return self._ingest(message, schema, batches, client)
        if isinstance(message, sql_pb2.CommandPreparedStatementQuery):
            statement = self.statements.get(message.prepared_statement_handle)
            statement.bind(_parameter_batches(batches))
            return sql_pb2.DoPutPreparedStatementResult(
                prepared_statement_handle=statement.handle).SerializeToString()
        if isinstance(message, (sql_pb2.CommandStatementUpdate,
                                sql_pb2.CommandPreparedStatementUpdate,
                                sql_pb2.CommandStatementSubstraitPlan)):
            raise PermissionDenied(_READ_ONLY)
        raise InvalidInput(f"{message.DESCRIPTOR.name} is not a DoPut command")

    def _ingest(self, command: sql_pb2.CommandStatementIngest, schema: pa.Schema,
                batches: Iterator[pa.RecordBatch], client: str | None) -> bytes:
        _refuse_transaction(command)
        if command.temporary:
            raise InvalidInput("temporary tables are not supported: every dataset is "
                               "durable; ingest into a named table instead")
        if command.HasField("catalog") and command.catalog not in ("", metadata.CATALOG):
            raise InvalidInput(f"unknown catalog {command.catalog!r}: datasets live in "
                               f"{metadata.CATALOG!r}")
        if command.HasField("schema") and command.schema not in ("", metadata.DB_SCHEMA):
            raise InvalidInput(f"unknown schema {command.schema!r}: datasets live in "
                               f"{metadata.DB_SCHEMA!r}")
        mode = self._ingest_mode(command.table, command.table_definition_options)
        rows = 0

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            for batch in batches:
                rows += batch.num_rows
                yield batch

        # The layout rides in the command's options map (docs/FLIGHT.md § Layouts).
        layout = layout_of(command.options.get("partition_by"), command.options.get("sort_by"))
        manifest = self.lake.ingest.ingest_arrow(command.table, mode, schema, counted(),
                                                 client=client, layout=layout)
        log.info("flightsql_ingest", dataset=manifest.name, mode=mode, rows=rows,
                 version=manifest.version)
        return sql_pb2.DoPutUpdateResult(record_count=rows).SerializeToString()

    def _ingest_mode(self, table: str, options: Any) -> Mode:
        """The lake's write mode for the client's if-exists / if-not-exists choice."""
        missing, exists = options.if_not_exist, options.if_exists
        if missing == _TableDefinition.TABLE_NOT_EXIST_OPTION_UNSPECIFIED or \
                exists == _TableDefinition.TABLE_EXISTS_OPTION_UNSPECIFIED:
            raise InvalidInput("bulk ingest needs table_definition_options with both "
                               "if_not_exist and if_exists set")
        create = missing == _TableDefinition.TABLE_NOT_EXIST_OPTION_CREATE
        present = self._exists(table)
        if exists == _TableDefinition.TABLE_EXISTS_OPTION_FAIL:
            # the lake's own create is an idempotent retry; SQL's create refuses a table
            if present:
                raise Conflict(f"dataset {table} already exists (ingest with mode append "
                               "or replace to change it)")
            if not create:
                raise InvalidInput("if_not_exist=FAIL with if_exists=FAIL can never succeed")
            return "create"
        if not present and not create:
            raise NotFound(f"cannot ingest into unknown dataset: {table}")
        if exists == _TableDefinition.TABLE_EXISTS_OPTION_REPLACE:
            return "replace" if present else "create"
        return "append" if present else "create"

    def _exists(self, table: str) -> bool:
        try:
            self.lake.catalog.get(table)
        except NotFound:
            return False
        return True

    # -- actions -----------------------------------------------------------------------

    def do_action(self, action_type: str, body: bytes) -> list[bytes]:
        return self.actions[action_type][1](body)

    def _create_prepared_statement(self, body: bytes) -> list[bytes]:
        request = unpack_as(body, sql_pb2.ActionCreatePreparedStatementRequest)
        _refuse_transaction(request)
        statement = self.statements.create(request.query)
        try:
            dataset_schema = self.lake.describe(statement.null_statement())
        except BaseException:
            self.statements.close(statement.handle)
            raise
        result = sql_pb2.ActionCreatePreparedStatementResult(
            prepared_statement_handle=statement.handle,
            dataset_schema=dataset_schema.serialize().to_pybytes(),
            parameter_schema=statement.parameter_schema.serialize().to_pybytes(),
        )
        return [pack(result)]

    def _close_prepared_statement(self, body: bytes) -> list[bytes]:
        request = unpack_as(body, sql_pb2.ActionClosePreparedStatementRequest)
        self.statements.close(request.prepared_statement_handle)
        return []

    def _cancel_flight_info(self, body: bytes) -> list[bytes]:
        request = _parse(session_pb2.CancelFlightInfoRequest, body)
        cancelled = self._cancel(request.info)
        status = (session_pb2.CANCEL_STATUS_CANCELLED if cancelled
                  else session_pb2.CANCEL_STATUS_NOT_CANCELLABLE)
        return [session_pb2.CancelFlightInfoResult(status=status).SerializeToString()]

    def _cancel_query(self, body: bytes) -> list[bytes]:
        request = unpack_as(body, sql_pb2.ActionCancelQueryRequest)
        result = sql_pb2.ActionCancelQueryResult
        outcome = (result.CANCEL_RESULT_CANCELLED if self._cancel(request.info)
                   else result.CANCEL_RESULT_NOT_CANCELLABLE)
        return [pack(result(result=outcome))]

    def _cancel(self, serialized_info: bytes) -> bool:
        """Cancel the reads behind a FlightInfo's tickets; True if any was running."""
        try:
            info = flight.FlightInfo.deserialize(serialized_info)
        except (pa.ArrowException, ValueError) as exc:
            raise InvalidInput(f"malformed FlightInfo to cancel: {exc}") from exc
        read_ids = []
        for endpoint in info.endpoints:
            message = unpack(endpoint.ticket.ticket)
            if isinstance(message, sql_pb2.TicketStatementQuery):
                try:
                    read_ids.append(json.loads(message.statement_handle)["id"])
                except (ValueError, KeyError, TypeError):
                    continue
        return any([self.lake.cancel(read_id) for read_id in read_ids])


    def _set_session_options(self, body: bytes) -> list[bytes]:
        request = _parse(session_pb2.SetSessionOptionsRequest, body)
        result = session_pb2.SetSessionOptionsResult()
        for name in request.session_options:
            result.errors[name].value = session_pb2.SetSessionOptionsResult.INVALID_NAME
        return [result.SerializeToString()]

    def _get_session_options(self, body: bytes) -> list[bytes]:
        _parse(session_pb2.GetSessionOptionsRequest, body)
        return [session_pb2.GetSessionOptionsResult().SerializeToString()]

    def _close_session(self, body: bytes) -> list[bytes]:
        _parse(session_pb2.CloseSessionRequest, body)
        return [session_pb2.CloseSessionResult(
            status=session_pb2.CloseSessionResult.CLOSED).SerializeToString()]

    # -- helpers -----------------------------------------------------------------------

    def _strings(self, sql: str) -> list[str]:
        """A one-column query's values, read through the lake's read path."""
        table = self.lake.read(sql).read_all()
        return [str(value) for value in table.column(0).to_pylist()]


def _bounded(result: Result, on_close: Callable[[], None] | None = None) -> Result:
    """The result in record batches of at most ``MAX_BATCH_BYTES`` (zero-copy slices).

    Flight SQL clients cap a gRPC message (the ADBC driver at 16 MiB), and a data object
    served whole can be one batch far larger than that.
    """
    table = result.table
    if table is not None:
        result.close()
        return Result(result.schema, pa.Table.from_batches(
            [piece for batch in table.to_batches() for piece in _slices(batch)],
            schema=result.schema), result.read_id)
    pieces = (piece for batch in result.batches() for piece in _slices(batch))

    def close() -> None:
        try:
            result.close()
        finally:
            if on_close is not None:
                on_close()

    return Result(result.schema, pieces, result.read_id, on_close=close)


def _slices(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    size = batch.nbytes
    if size <= MAX_BATCH_BYTES or batch.num_rows <= 1:
        yield batch
        return
    rows = max(1, batch.num_rows * MAX_BATCH_BYTES // size)
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def _parameter_batches(batches: Iterable[pa.RecordBatch],
                       limit: int = 2) -> list[pa.RecordBatch]:
    """Parameter batches: one row is all a query takes, so stop reading past ``limit``."""
    kept: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        kept.append(batch)
        rows += batch.num_rows
        if rows >= limit:
            break
    return kept


def _refuse_transaction(message: Message) -> None:
    if message.HasField("transaction_id"):
        raise InvalidInput("transactions are not supported: every statement stands alone")


def _parse(message_class: type[Message], body: bytes) -> Any:
    try:
        return message_class.FromString(body)
    except DecodeError as exc:
        raise InvalidInput(f"malformed {message_class.DESCRIPTOR.name}: {exc}") from exc

