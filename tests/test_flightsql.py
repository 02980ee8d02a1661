"""Flight SQL on the Flight port, through real SQL clients: the ADBC driver, polars, pandas.

One server on local storage serves most tests; one test runs the same client end to end
on S3. Result schemas are checked against the specification with raw pyarrow.flight.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2
from structlog.testing import capture_logs

from flight_lake.flightsql import flight_session_pb2 as session_pb2
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2
from flight_lake.flightsql import metadata, sql_info
from flight_lake.flightsql.wire import pack
from flight_lake.serve import Server
from flight_lake.settings import Settings, StorageSettings
from flight_lake_client import connect
from tests.support import hold_ingest_slot, make_settings, wait_until

PEOPLE = pa.table({
    "id": pa.array([1, 2, 3, 4], pa.int64()),
    "name": ["ada", "bob", "cy", "di"],
    "rate": [10.5, 12.0, None, 9.25],
})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("flightsql")
    settings = make_settings(StorageSettings(uri=str(tmp / "lake")), tmp,
                             http={"enabled": False})
    with Server(settings) as running:
        with flight_sql.connect(running.flight_uri, autocommit=True) as connection:
            connection.cursor().adbc_ingest("people", PEOPLE, mode="create")
        yield running


@pytest.fixture
def connection(server: Server) -> Iterator[flight_sql.Connection]:
    with flight_sql.connect(server.flight_uri, autocommit=True) as opened:
        yield opened


def _rows(connection: flight_sql.Connection, sql: str,
          parameters: tuple | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchall()


def test_statements_with_and_without_parameters(connection: flight_sql.Connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name FROM people WHERE rate > 10 ORDER BY id")
        table = cursor.fetch_arrow_table()
    assert table.to_pydict() == {"id": [1, 2], "name": ["ada", "bob"]}
    assert _rows(connection, "SELECT name FROM people WHERE id = ? OR name = ? ORDER BY 1",
                 (3, "di")) == [("cy",), ("di",)]
    assert _rows(connection, "SELECT ? AS quoted", ("it's; DROP TABLE people",)) == [
        ("it's; DROP TABLE people",)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, rate FROM people ORDER BY id")
        frame = cursor.fetch_df()
    assert list(frame["name"]) == ["ada", "bob", "cy", "di"]
    assert frame["rate"].isna().tolist() == [False, False, True, False]


def test_the_same_prepared_statement_runs_with_new_parameters(
        connection: flight_sql.Connection) -> None:
    with connection.cursor() as cursor:
        seen = []
        for wanted in (1, 4):
            cursor.execute("SELECT name FROM people WHERE id = ?", (wanted,))
            seen.append(cursor.fetchall())
    assert seen == [[("ada",)], [("di",)]]


def test_polars_and_pandas_over_the_adbc_connection(connection: flight_sql.Connection) -> None:
    import pandas as pd
    import polars as pl

    frame = pl.read_database("SELECT id, name FROM people WHERE id <= 2 ORDER BY id", connection)
    assert frame.to_dict(as_series=False) == {"id": [1, 2], "name": ["ada", "bob"]}
    assert frame.schema == {"id": pl.Int64, "name": pl.String}
    pandas_frame = pd.read_sql("SELECT name, rate FROM people ORDER BY id", connection)
    assert list(pandas_frame["name"]) == ["ada", "bob", "cy", "di"]
    assert pandas_frame["rate"].isna().tolist() == [False, False, True, False]


def test_a_large_scan_arrives_in_batches_the_driver_accepts(
        connection: flight_sql.Connection) -> None:
    """The ADBC driver refuses gRPC messages over 16 MiB; a whole object is bigger."""
    wide = pa.table({"n": pa.array(range(40_000), pa.int64()),
                     "text": pa.array(["x" * 1000] * 40_000)})
    with connection.cursor() as cursor:
        # the driver's own messages obey the cap too: send the rows in small batches
        cursor.adbc_ingest("wide", pa.Table.from_batches(wide.to_batches(5_000)),
                           mode="replace")
        for _ in range(2):  # from the stored objects, then from the object cache
            cursor.execute("SELECT * FROM wide")
            table = cursor.fetch_arrow_table()
            assert table.num_rows == 40_000
            assert table.column("n").to_pylist() == list(range(40_000))


def test_sql_info_names_the_server(connection: flight_sql.Connection) -> None:
    info = connection.adbc_get_info()
    assert info["vendor_name"] == "flight_lake"
    assert info["vendor_arrow_version"] == pa.__version__


def test_catalog_tree_schema_and_types(connection: flight_sql.Connection) -> None:
    objects = connection.adbc_get_objects().read_all().to_pylist()
    assert [catalog["catalog_name"] for catalog in objects] == [metadata.CATALOG]
    schemas = objects[0]["catalog_db_schemas"]
    assert [schema["db_schema_name"] for schema in schemas] == [metadata.DB_SCHEMA]
    tables = {table["table_name"]: table for table in schemas[0]["db_schema_tables"]}
    assert "people" in tables
    assert [column["column_name"] for column in tables["people"]["table_columns"]] == [
        "id", "name", "rate"]
    assert connection.adbc_get_table_schema("people").names == ["id", "name", "rate"]
    assert connection.adbc_get_table_types() == ["TABLE"]
    filtered = connection.adbc_get_objects(table_name_filter="peo%").read_all().to_pylist()
    names = [table["table_name"] for table in filtered[0]["catalog_db_schemas"][0][
        "db_schema_tables"]]
    assert names == ["people"]


def test_fully_qualified_names_resolve(connection: flight_sql.Connection) -> None:
    assert _rows(connection, 'SELECT count(*) FROM "memory"."main"."people"') == [(4,)]


def test_bulk_ingest_create_append_replace(connection: flight_sql.Connection) -> None:
    batch = pa.table({"k": pa.array([1, 2], pa.int32()), "v": ["a", "b"]})
    with connection.cursor() as cursor:
        assert cursor.adbc_ingest("ingested", batch, mode="create") == 2
        assert cursor.adbc_ingest("ingested", batch, mode="append") == 2
        assert _rows(connection, "SELECT count(*) FROM ingested") == [(4,)]
        assert cursor.adbc_ingest("ingested", batch.slice(0, 1), mode="replace") == 1
        assert _rows(connection, "SELECT k, v FROM ingested") == [(1, "a")]
        assert cursor.adbc_ingest("ingested", batch, mode="create_append") == 2
        assert _rows(connection, "SELECT count(*) FROM ingested") == [(3,)]
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="already exists"):
            cursor.adbc_ingest("ingested", batch, mode="create")
        with pytest.raises(adbc_driver_manager.Error, match="unknown dataset"):
            cursor.adbc_ingest("never_made", batch, mode="append")
        with pytest.raises(adbc_driver_manager.Error, match="temporary tables"):
            cursor.adbc_ingest("temp_one", batch, mode="create", temporary=True)
        with pytest.raises(adbc_driver_manager.Error, match="schema"):
            cursor.adbc_ingest("ingested", pa.table({"other": [1.5]}), mode="append")
    assert _rows(connection, "SELECT count(*) FROM ingested") == [(3,)]


def test_errors_carry_sql_status_codes(connection: flight_sql.Connection) -> None:
    with connection.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.ProgrammingError,
                           match=r"INVALID_ARGUMENT.*syntax error") as bad_sql:
            cursor.execute("SELEC 1")
        assert "invalid_input" in str(bad_sql.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError,
                           match=r"NOT_FOUND.*unknown dataset: nope"):
            cursor.execute("SELECT * FROM nope")
        with pytest.raises(adbc_driver_manager.Error, match="read-only"):
            cursor.executemany("SELECT ?", [(1,), (2,)])
        with pytest.raises(adbc_driver_manager.Error, match="permission_denied"):
            cursor.execute("CREATE TABLE t AS SELECT 1")
        cursor.execute("SELECT 1 AS still_working")
        assert cursor.fetchall() == [(1,)]


def test_sql_updates_are_refused_as_read_only(server: Server) -> None:
    update = sql_pb2.CommandStatementUpdate(query="DELETE FROM people")
    with flight.connect(server.flight_uri) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(pack(update)),
                                  pa.schema([]))
        with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
            writer.close()
        assert _rows_via(client, "SELECT count(*) AS n FROM people") == [{"n": 4}]


def _rows_via(client: flight.FlightClient, sql: str) -> list[dict]:
    _, table = _info_and_rows(client, sql_pb2.CommandStatementQuery(query=sql))
    return table.to_pylist()


def _info_and_rows(client: flight.FlightClient, command: object) -> tuple[pa.Schema, pa.Table]:
    descriptor = flight.FlightDescriptor.for_command(pack(command))
    info = client.get_flight_info(descriptor)
    table = client.do_get(info.endpoints[0].ticket).read_all()
    return info.schema, table


@pytest.mark.parametrize(("command", "schema"), [
    (sql_pb2.CommandGetSqlInfo(), sql_info.SCHEMA),
    (sql_pb2.CommandGetCatalogs(), metadata.CATALOGS_SCHEMA),
    (sql_pb2.CommandGetDbSchemas(), metadata.DB_SCHEMAS_SCHEMA),
    (sql_pb2.CommandGetTables(), metadata.TABLES_SCHEMA),
    (sql_pb2.CommandGetTables(include_schema=True), metadata.TABLES_WITH_SCHEMA_SCHEMA),
    (sql_pb2.CommandGetTableTypes(), metadata.TABLE_TYPES_SCHEMA),
    (sql_pb2.CommandGetXdbcTypeInfo(), metadata.XDBC_TYPE_INFO_SCHEMA),
    (sql_pb2.CommandGetPrimaryKeys(table="people"), metadata.PRIMARY_KEYS_SCHEMA),
    (sql_pb2.CommandGetExportedKeys(table="people"), metadata.FOREIGN_KEYS_SCHEMA),
    (sql_pb2.CommandGetImportedKeys(table="people"), metadata.FOREIGN_KEYS_SCHEMA),
    (sql_pb2.CommandGetCrossReference(pk_table="people", fk_table="people"),
     metadata.FOREIGN_KEYS_SCHEMA),
])
def test_metadata_results_have_the_specified_schemas(server: Server, command: object,
                                                     schema: pa.Schema) -> None:
    with flight.connect(server.flight_uri) as client:
        announced, table = _info_and_rows(client, command)
        assert client.get_schema(flight.FlightDescriptor.for_command(pack(command))
                                 ).schema.equals(schema)
    assert announced.equals(schema)
    assert table.schema.equals(schema)


def test_metadata_rows(server: Server) -> None:
    with flight.connect(server.flight_uri) as client:
        _, tables = _info_and_rows(client, sql_pb2.CommandGetTables(
            table_name_filter_pattern="p_ople", include_schema=True))
        _, none = _info_and_rows(client, sql_pb2.CommandGetTables(table_types=["VIEW"]))
        _, types = _info_and_rows(client, sql_pb2.CommandGetXdbcTypeInfo(data_type=12))
        _, info = _info_and_rows(client, sql_pb2.CommandGetSqlInfo(info=[
            sql_info.SERVER_READ_ONLY, sql_info.IDENTIFIER_QUOTE_CHAR,
            sql_info.TRANSACTIONS_SUPPORTED, sql_info.KEYWORDS]))
    assert tables.column("table_name").to_pylist() == ["people"]
    table_schema = pa.ipc.read_schema(pa.py_buffer(tables.column("table_schema")[0].as_py()))
    assert table_schema.names == ["id", "name", "rate"]
    assert none.num_rows == 0
    assert types.column("type_name").to_pylist() == ["VARCHAR"]
    values = dict(zip(info.column("info_name").to_pylist(), info.column("value").to_pylist(),
                      strict=True))
    assert values[sql_info.SERVER_READ_ONLY] is True
    assert values[sql_info.IDENTIFIER_QUOTE_CHAR] == '"'
    assert values[sql_info.TRANSACTIONS_SUPPORTED] is False
    assert "select" in [keyword.lower() for keyword in values[sql_info.KEYWORDS]]


def _action(client: flight.FlightClient, name: str, body: bytes) -> list[bytes]:
    return [result.body.to_pybytes() for result in client.do_action(flight.Action(name, body))]


def test_session_actions_are_answered(server: Server) -> None:
    request = session_pb2.SetSessionOptionsRequest()
    request.session_options["catalog"].string_value = "elsewhere"
    with flight.connect(server.flight_uri) as client:
        (set_result,) = _action(client, "SetSessionOptions", request.SerializeToString())
        (get_result,) = _action(client, "GetSessionOptions", b"")
        (close_result,) = _action(client, "CloseSession", b"")
    errors = session_pb2.SetSessionOptionsResult.FromString(set_result).errors
    assert errors["catalog"].value == session_pb2.SetSessionOptionsResult.INVALID_NAME
    assert not session_pb2.GetSessionOptionsResult.FromString(get_result).session_options
    assert session_pb2.CloseSessionResult.FromString(close_result).status == \
        session_pb2.CloseSessionResult.CLOSED


def test_prepared_statement_handles_and_parameter_schema(server: Server) -> None:
    request = sql_pb2.ActionCreatePreparedStatementRequest(
        query="SELECT name FROM people WHERE id = ? AND rate > ?")
    with flight.connect(server.flight_uri) as client:
        (raw,) = _action(client, "CreatePreparedStatement", pack(request))
        created = any_pb2.Any.FromString(raw)
        result = sql_pb2.ActionCreatePreparedStatementResult()
        assert created.Unpack(result)
        parameters = pa.ipc.read_schema(pa.py_buffer(result.parameter_schema))
        dataset = pa.ipc.read_schema(pa.py_buffer(result.dataset_schema))
        assert parameters.types == [pa.utf8(), pa.utf8()]
        assert dataset.names == ["name"]
        handle = sql_pb2.CommandPreparedStatementQuery(
            prepared_statement_handle=result.prepared_statement_handle)
        with pytest.raises(pa.ArrowInvalid, match="none are bound"):
            client.get_flight_info(flight.FlightDescriptor.for_command(pack(handle)))
        close = sql_pb2.ActionClosePreparedStatementRequest(
            prepared_statement_handle=result.prepared_statement_handle)
        assert _action(client, "ClosePreparedStatement", pack(close)) == []
        with pytest.raises(pa.ArrowKeyError, match="unknown or closed prepared statement"):
            client.get_flight_info(flight.FlightDescriptor.for_command(pack(handle)))


def test_json_commands_still_work_beside_flight_sql(server: Server) -> None:
    with flight.connect(server.flight_uri) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(
            json.dumps({"sql": "SELECT count(*) AS n FROM people"})))
        assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"n": 4}]
        actions = {action.type for action in client.list_actions()}
    assert {"health", "CreatePreparedStatement", "CancelFlightInfo"} <= actions


def test_one_log_event_names_the_flight_sql_command(connection: flight_sql.Connection) -> None:
    with capture_logs() as events, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchall()
    commands = [event.get("command") for event in events
                if event["event"] == "flight_request"]
    assert "CreatePreparedStatement" in commands
    assert "CommandPreparedStatementQuery" in commands
    assert "TicketStatementQuery" in commands


def test_end_to_end_on_s3(s3_storage_settings: StorageSettings, tmp_path: Path) -> None:
    settings: Settings = make_settings(s3_storage_settings, tmp_path, http={"enabled": False})
    with Server(settings) as running, \
            flight_sql.connect(running.flight_uri, autocommit=True) as connection:
        with connection.cursor() as cursor:
            assert cursor.adbc_ingest("people", PEOPLE, mode="create") == 4
            cursor.execute("SELECT name FROM people WHERE id = ?", (2,))
            assert cursor.fetchall() == [("bob",)]
        assert connection.adbc_get_table_schema("people").names == ["id", "name", "rate"]


# A purpose-made slow query: 40 billion products, minutes of DuckDB work on this machine.
SLOW_SQL = "SELECT sum(a.range * b.range) AS s FROM range(200000) a CROSS JOIN range(200000) b"


@pytest.fixture
def patient_server(serve: Callable[..., Server]) -> Server:
    """A server whose query timeout is far away, so only a cancellation stops SLOW_SQL."""
    return serve(http={"enabled": False}, query={"timeout_seconds": 60})


def _reads_running(server: Server) -> int:
    return int(server.lake.health()["reads_running"])


def test_adbc_cancel_stops_the_running_query(patient_server: Server) -> None:
    failure: list[BaseException] = []
    with flight_sql.connect(patient_server.flight_uri, autocommit=True) as connection:
        cursor = connection.cursor()

        def run() -> None:
            try:
                cursor.execute(SLOW_SQL)
                cursor.fetchall()
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run)
        with capture_logs() as events:
            worker.start()
            wait_until(lambda: _reads_running(patient_server) == 1)
            cursor.adbc_cancel()
            worker.join(timeout=60)
            assert not worker.is_alive()
            # the server noticed the client go and interrupted DuckDB: the read is over
            wait_until(lambda: _reads_running(patient_server) == 0)
        cursor.close()
    assert failure and isinstance(failure[0], adbc_driver_manager.Error)
    assert any(event["event"] == "flightsql_read_cancelled" for event in events)


def test_cancel_flight_info_stops_the_running_query(patient_server: Server) -> None:
    descriptor = flight.FlightDescriptor.for_command(
        pack(sql_pb2.CommandStatementQuery(query=SLOW_SQL)))
    failure: list[BaseException] = []
    with flight.connect(patient_server.flight_uri) as client:
        info = client.get_flight_info(descriptor)

        def run() -> None:
            try:
                client.do_get(info.endpoints[0].ticket).read_all()
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        wait_until(lambda: _reads_running(patient_server) == 1)
        request = session_pb2.CancelFlightInfoRequest(info=info.serialize())
        (raw,) = _action(client, "CancelFlightInfo", request.SerializeToString())
        worker.join(timeout=60)
        assert not worker.is_alive()
        # a ticket no longer running cannot be cancelled again, by either action
        (again,) = _action(client, "CancelFlightInfo", request.SerializeToString())
        older = sql_pb2.ActionCancelQueryRequest(info=info.serialize())
        (legacy,) = _action(client, "CancelQuery", pack(older))
    assert session_pb2.CancelFlightInfoResult.FromString(raw).status == \
        session_pb2.CANCEL_STATUS_CANCELLED
    assert session_pb2.CancelFlightInfoResult.FromString(again).status == \
        session_pb2.CANCEL_STATUS_NOT_CANCELLABLE
    legacy_result = sql_pb2.ActionCancelQueryResult()
    assert any_pb2.Any.FromString(legacy).Unpack(legacy_result)
    assert legacy_result.result == sql_pb2.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE
    assert failure and isinstance(failure[0], flight.FlightCancelledError)
    assert _reads_running(patient_server) == 0


def test_the_timeout_and_the_busy_slots_hold_for_sql_clients(
        serve: Callable[..., Server]) -> None:
    server = serve(http={"enabled": False}, query={"timeout_seconds": 1},
                   ingest={"max_concurrent_ingests": 1})
    with flight_sql.connect(server.flight_uri, autocommit=True) as connection, \
            connection.cursor() as cursor:
        cursor.execute(SLOW_SQL)
        with pytest.raises(adbc_driver_manager.Error, match=r"TIMEOUT.*query.timeout_seconds"):
            cursor.fetchall()
        with connect(server.flight_uri) as lake:
            held, thread, _ = hold_ingest_slot(lake, "held")
            try:
                with pytest.raises(adbc_driver_manager.Error,
                                   match=r"busy: .*retry in \d+ s.*\(Unavailable;"):
                    cursor.adbc_ingest("refused", pa.table({"x": [1]}), mode="create")
            finally:
                held.release.set()
                thread.join(timeout=30)
    assert server.lake.health()["reads_running"] == 0


def test_bulk_ingest_counts_against_the_per_client_slots(serve: Callable[..., Server]) -> None:
    """A free slot is not for a client address that already holds its share
    (``ingest.max_concurrent_ingests_per_client``), whether it asks by DoPut or by Flight
    SQL bulk ingest."""
    server = serve(http={"enabled": False},
                   ingest={"max_concurrent_ingests": 2, "max_concurrent_ingests_per_client": 1})
    with flight_sql.connect(server.flight_uri, autocommit=True) as connection, \
            connection.cursor() as cursor, connect(server.flight_uri) as lake:
        held, thread, _ = hold_ingest_slot(lake, "held")
        try:
            with pytest.raises(adbc_driver_manager.Error,
                               match=r"busy: .*max_concurrent_ingests_per_client"):
                cursor.adbc_ingest("refused", pa.table({"x": [1]}), mode="create")
        finally:
            held.release.set()
            thread.join(timeout=30)
        assert cursor.adbc_ingest("accepted", pa.table({"x": [1]}), mode="create") == 1
    assert "refused" not in {m.name for m in server.lake.catalog.list()}
