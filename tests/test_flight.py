"""The Flight server end to end through a real pyarrow.flight client (S3: one smoke test)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import action, error_body, put_csv, put_table, sql, wait_until

# 10^12 rows to sum: minutes of work on any machine, so it always meets its timeout.
SLOW_SQL = "SELECT sum(i) AS total FROM range(1000000000000) t(i)"
ROLES = ["nurse", "welder", "driver"]
STATES = ["IL", "CA", "NY", "TX"]


def workers_csv(rows: int) -> bytes:
    lines = ["id,name,role,state,zip,rate,notes"]
    for i in range(rows):
        lines.append(f'{i},worker {i},{ROLES[i % 3]},{STATES[i % 4]},{i % 1000:05d},'
                     f'{10 + i % 7}.5,"says ""hi"", twice"')
    return ("\r\n".join(lines) + "\r\n").encode()


def expected_il_counts(rows: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(rows):
        if STATES[i % 4] == "IL":
            counts[ROLES[i % 3]] = counts.get(ROLES[i % 3], 0) + 1
    return counts


Serve = Callable[..., Server]


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """Flight only: nothing in this module speaks HTTP, whose stop costs ~0.2 s a server."""
    return serve(http={"enabled": False})


@pytest.fixture
def client(flight_client: flight.FlightClient) -> flight.FlightClient:
    return flight_client


def test_csv_upload_query_and_objects(
        serve: Serve, backend_storage_settings: StorageSettings) -> None:
    """Flight's smoke test on each backend: the other Flight tests run on local storage."""
    server = serve(storage=backend_storage_settings, http={"enabled": False})
    with flight.connect(server.flight_uri) as client:
        rows = 20_000
        manifest = put_csv(client, "workers", workers_csv(rows), chunk_size=64 * 1024)
        assert manifest["name"] == "workers" and manifest["row_count"] == rows
        assert {c["name"]: c["type"] for c in manifest["schema"]}["zip"] == "string"
        storage = server.lake.storage  # type: ignore[union-attr]
        keys = [o.key for o in storage.list("datasets/workers")]
        assert keys and keys == sorted(o["key"] for o in manifest["objects"])
        for key in keys:
            assert key.startswith("datasets/workers/") and key.endswith(".parquet")
            with storage.open_read(key) as handle:
                table = pq.read_table(handle)
            assert table.column("zip")[1].as_py() == "00001"
            assert table.column("notes")[0].as_py() == 'says "hi", twice'

        assert sql(client, "SELECT count(*) FROM workers").to_pylist() == [{"count_star()": rows}]
        grouped = sql(client,
                      "SELECT role, count(*) AS n FROM workers WHERE state='IL' GROUP BY role")
        assert {r["role"]: r["n"] for r in grouped.to_pylist()} == expected_il_counts(rows)


def test_doget_takes_a_sql_ticket_directly(client: flight.FlightClient) -> None:
    put_csv(client, "t", b"a,b\n1,x\n2,y\n")
    ticket = flight.Ticket(json.dumps({"sql": "SELECT sum(a) AS s FROM t"}).encode())
    assert client.do_get(ticket).read_all().to_pylist() == [{"s": 3}]


def test_large_results_stream_in_many_batches(client: flight.FlightClient) -> None:
    table = pa.table({"n": pa.array(range(300_000), pa.int64())})
    put_table(client, "numbers", table)
    reader = client.do_get(flight.Ticket(json.dumps({"sql": "SELECT n FROM numbers"}).encode()))
    batches = 0
    total = 0
    for chunk in reader:
        batches += 1
        total += chunk.data.num_rows
    assert total == 300_000 and batches > 1


def test_arrow_upload_append_and_replace(client: flight.FlightClient) -> None:
    table = pa.table({"id": [1, 2], "when": pa.array([1, 2], pa.date32()),
                      "ok": [True, None]})
    first = put_table(client, "events", table)
    assert first["row_count"] == 2 and first["version"] == 1
    appended = put_table(client, "events", table, mode="append")
    assert appended["row_count"] == 4 and appended["dataset_id"] == first["dataset_id"]
    replaced = put_table(client, "events", table.slice(0, 1), mode="replace")
    assert replaced["row_count"] == 1
    result = sql(client, "SELECT * FROM events")
    assert result.schema.field("when").type == pa.date32()
    assert result.to_pylist() == table.slice(0, 1).to_pylist()


def test_list_flights_and_dataset_endpoints(client: flight.FlightClient) -> None:
    put_csv(client, "alpha", b"x\n1\n2\n")
    put_csv(client, "beta", b"y\nq\n")
    put_csv(client, "beta", b"y\nr\n", mode="append")
    infos = {info.descriptor.path[0].decode(): info for info in client.list_flights()}
    assert set(infos) == {"alpha", "beta"}
    beta = client.get_flight_info(flight.FlightDescriptor.for_path("beta"))
    assert beta.total_records == 2 and len(beta.endpoints) == 2
    assert beta.schema.names == ["y"]
    parts = [client.do_get(e.ticket).read_all() for e in beta.endpoints]
    assert sorted(pa.concat_tables(parts).column("y").to_pylist()) == ["q", "r"]


def test_actions_are_listed_and_work(server: Server, client: flight.FlightClient) -> None:
    names = {a.type: a.description for a in client.list_actions()}
    assert set(names) == {"catalog.list", "catalog.get", "catalog.register", "health",
                          "ingest.begin", "ingest.commit", "ingest.abort",
                          # the Flight SQL dialect's (tests/test_flightsql.py)
                          "CreatePreparedStatement", "ClosePreparedStatement",
                          "CancelFlightInfo", "CancelQuery", "SetSessionOptions",
                          "GetSessionOptions", "CloseSession"}
    assert all(names.values())
    put_csv(client, "alpha", b"x\n1\n")
    health = action(client, "health")
    assert health["status"] == "ok" and health["service"] == "flight_lake"
    assert health["datasets"] == 1
    assert [m["name"] for m in action(client, "catalog.list")] == ["alpha"]
    assert action(client, "catalog.get", {"name": "alpha"})["row_count"] == 1

    sink = io.BytesIO()
    pq.write_table(pa.table({"v": [1.5, 2.5]}), sink)
    server.lake.storage.put("datasets/manual/mine/part-0.parquet", sink.getvalue())  # type: ignore[union-attr]
    registered = action(client, "catalog.register",
                        {"name": "manual", "keys": ["datasets/manual/mine/part-0.parquet"]})
    assert registered["row_count"] == 2
    assert sql(client, "SELECT sum(v) AS s FROM manual").to_pylist() == [{"s": 4.0}]


def test_catalog_survives_restart(serve: Serve) -> None:
    first = serve()
    with flight.connect(first.flight_uri) as client:
        put_csv(client, "kept", b"a\n1\n2\n3\n")
        before = action(client, "catalog.get", {"name": "kept"})
    first.stop()
    second = serve()
    assert second.settings.storage == first.settings.storage
    with flight.connect(second.flight_uri) as client:
        assert action(client, "catalog.get", {"name": "kept"}) == before
        assert sql(client, "SELECT count(*) AS n FROM kept").to_pylist() == [{"n": 3}]


def _code(call) -> tuple[type, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(flight.FlightError) as caught:
        call()
    return type(caught.value), error_body(caught.value)


def test_errors_a_program_can_tell_apart(server: Server, client: flight.FlightClient) -> None:
    put_csv(client, "t", b"a,b\n1,x\n")
    storage_before = server.lake.storage.list()  # type: ignore[union-attr]

    kind, body = _code(lambda: client.get_flight_info(flight.FlightDescriptor.for_path("nope")))
    assert body["error"] == "not_found" and kind is flight.FlightServerError
    kind, body = _code(lambda: put_csv(client, "bad", b"a,b\n1,2\n3\n4,5\n"))
    assert body["error"] == "invalid_input" and body["line"] == 3
    kind, body = _code(lambda: put_csv(client, "t", b"z\n1\n"))
    assert body["error"] == "conflict"
    kind, body = _code(lambda: sql(client, "DELETE FROM t"))
    assert body["error"] == "permission_denied" and kind is flight.FlightUnauthorizedError
    kind, body = _code(lambda: sql(client, "SELECT * FROM read_csv('/etc/passwd')"))
    assert body["error"] == "permission_denied"
    kind, body = _code(lambda: sql(client, "SELEC 1"))
    assert body["error"] == "invalid_input"
    kind, body = _code(lambda: list(client.do_action(flight.Action("drop.everything", b""))))
    assert body["error"] == "invalid_input" and "unknown action" in body["detail"]
    kind, body = _code(lambda: action(client, "catalog.get", {"nom": "t"}))
    assert body["error"] == "invalid_input"
    bad_command = flight.FlightDescriptor.for_command(b"{not json")
    kind, body = _code(lambda: client.get_flight_info(bad_command))
    assert body["error"] == "invalid_input"
    ticket = flight.Ticket(json.dumps({"dataset": "t", "key": "datasets/t/x.parquet"}).encode())
    kind, body = _code(lambda: client.do_get(ticket).read_all())
    assert body["error"] == "not_found"
    kind, body = _code(lambda: put_csv(client, "Bad-Name", b"a\n1\n"))
    assert body["error"] == "invalid_input" and "invalid dataset name" in body["detail"]

    assert server.lake.storage.list() == storage_before  # type: ignore[union-attr]


def test_csv_stream_must_be_chunks(client: flight.FlightClient) -> None:
    command = json.dumps({"op": "ingest", "name": "x", "format": "csv"})
    writer, _ = client.do_put(flight.FlightDescriptor.for_command(command),
                              pa.schema([("a", pa.int64())]))
    with pytest.raises(flight.FlightServerError, match="chunk: binary"):
        writer.write_batch(pa.record_batch([pa.array([1])], names=["a"]))
        writer.close()


def test_too_large_and_busy(serve: Serve) -> None:
    server = serve(ingest={"max_upload_bytes": 100_000, "max_concurrent_ingests": 1})
    with flight.connect(server.flight_uri) as client:
        _, body = _code(lambda: put_csv(client, "big", workers_csv(5000), chunk_size=8192))
        assert body["error"] == "too_large"

        release = threading.Event()
        started = threading.Event()

        def slow_chunks() -> Iterator[bytes]:
            yield b"a\n1\n"
            started.set()
            release.wait(30)
            yield b"2\n"

        holder = threading.Thread(target=lambda: put_csv(client, "slow", slow_chunks()))
        holder.start()
        try:
            assert started.wait(10)
            # the first chunk is on its way; wait until the server has taken the slot
            wait_until(lambda: action(client, "health")["ingests_running"] > 0, 10)
            kind, body = _code(lambda: put_csv(client, "other", b"a\n1\n"))
            assert body["error"] == "busy" and body["retry_after"] == 5
            assert kind is flight.FlightUnavailableError
        finally:
            release.set()
            holder.join(30)
        assert action(client, "catalog.get", {"name": "slow"})["row_count"] == 2
        assert server.lake.storage.list("datasets/big") == []  # type: ignore[union-attr]
        assert [m["name"] for m in action(client, "catalog.list")] == ["slow"]


def test_concurrent_appends_lose_nothing(client: flight.FlightClient, server: Server) -> None:
    put_csv(client, "shared", b"n\n0\n")
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            with flight.connect(server.flight_uri) as own:
                for n in range(3):
                    put_csv(own, "shared", f"n\n{worker * 10 + n + 1}\n".encode(), mode="append")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    manifest = action(client, "catalog.get", {"name": "shared"})
    assert manifest["row_count"] == 13 and manifest["version"] == 13
    values = sql(client, "SELECT n FROM shared ORDER BY n").column("n").to_pylist()
    assert values == sorted([0] + [w * 10 + n + 1 for w in range(4) for n in range(3)])


def test_one_log_event_per_request(client: flight.FlightClient) -> None:
    with capture_logs() as logs:
        put_csv(client, "logged", b"a\n1\n")
        with pytest.raises(flight.FlightError):
            client.get_flight_info(flight.FlightDescriptor.for_path("absent"))
    requests = [e for e in logs if e["event"] == "flight_request"]
    assert [(e["method"], e["outcome"]) for e in requests] == [
        ("do_put", "ok"), ("get_flight_info", "not_found")]
    assert all(e["seconds"] >= 0 for e in requests)


def test_slow_query_times_out_and_the_server_stays_healthy(serve: Serve) -> None:
    server = serve(query={"timeout_seconds": 0.5})
    with flight.connect(server.flight_uri) as client:
        kind, body = _code(lambda: sql(client, SLOW_SQL))
        assert body["error"] == "timeout" and kind is flight.FlightTimedOutError
        assert sql(client, "SELECT 42 AS answer").to_pylist() == [{"answer": 42}]
        assert action(client, "health")["status"] == "ok"


def _doget_sql(client: flight.FlightClient, query: str) -> pa.Table:
    return client.do_get(flight.Ticket(json.dumps({"sql": query}).encode())).read_all()


def test_whole_dataset_scans_are_served_from_the_object_cache(
    server: Server, client: flight.FlightClient
) -> None:
    first = pa.table({"id": pa.array(range(3_000), pa.int64()),
                      "when": pa.array([i % 900 for i in range(3_000)], pa.date32()),
                      "who": [None if i % 7 == 0 else f"w{i}" for i in range(3_000)],
                      "ok": [i % 2 == 0 for i in range(3_000)]})
    second = first.slice(0, 500).set_column(0, "id", pa.array(range(3_000, 3_500), pa.int64()))
    put_table(client, "scanned", first)
    manifest = put_table(client, "scanned", second, mode="append")
    objects = server.lake.objects  # type: ignore[union-attr]

    by_duckdb = _doget_sql(client, "SELECT * FROM scanned WHERE true")
    cold = _doget_sql(client, "SELECT * FROM scanned")  # decoded from storage, then kept
    assert len(objects) == 2 and objects.hits == 0
    warm = _doget_sql(client, ' select *  from "scanned" ;')
    assert objects.hits == 2
    for answer in (cold, warm):
        assert answer.schema == by_duckdb.schema
        assert answer.sort_by("id").equals(by_duckdb.sort_by("id"))
    assert sql(client, "SELECT * FROM scanned").schema == by_duckdb.schema  # GetFlightInfo too

    hits = objects.hits
    info = client.get_flight_info(flight.FlightDescriptor.for_path("scanned"))
    parts = [client.do_get(e.ticket).read_all() for e in info.endpoints]
    assert objects.hits == hits + 2 and [p.num_rows for p in parts] == [3_000, 500]
    assert [o["key"] for o in manifest["objects"]] == [
        json.loads(e.ticket.ticket)["key"] for e in info.endpoints]
    assert action(client, "health")["cache"]["arrow"]["hits"] == objects.hits


def test_select_star_is_duckdbs_answer_when_the_schemas_differ(
    server: Server, client: flight.FlightClient
) -> None:
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                      "text": pa.array(["a", "bb", None], pa.large_string())})
    put_table(client, "wide", table)
    declared = client.get_flight_info(
        flight.FlightDescriptor.for_command(json.dumps({"sql": "SELECT * FROM wide"}))).schema
    answer = _doget_sql(client, "SELECT * FROM wide")
    assert answer.schema == declared
    assert answer.to_pylist() == table.to_pylist()


def test_a_lost_object_is_a_clean_flight_error(server: Server, client: flight.FlightClient) -> None:
    manifest = put_csv(client, "lost", workers_csv(100))
    server.lake.storage.delete(manifest["objects"][0]["key"])  # type: ignore[union-attr]
    info = client.get_flight_info(flight.FlightDescriptor.for_path("lost"))
    kind, body = _code(lambda: client.do_get(info.endpoints[0].ticket).read_all())
    assert body["error"] == "not_found" and kind is flight.FlightServerError
    kind, body = _code(lambda: _doget_sql(client, "SELECT * FROM lost"))
    assert body["error"] in {"not_found", "storage_error"} and kind is flight.FlightServerError
    assert action(client, "health")["status"] == "ok"


def test_stop_refuses_new_calls_and_lets_running_queries_finish(serve: Serve) -> None:
    """A query still streaming when stop begins is answered whole; new calls are refused.

    The client holds the query open: it reads one batch of a 240 MB answer, far more than
    gRPC buffers, so the server's DoGet is running until the client reads the rest.
    """
    server = serve(query={"batch_rows": 10_000})
    uri = server.flight_uri
    rows = 30_000_000
    ticket = flight.Ticket(json.dumps({"sql": f"SELECT i FROM range({rows}) t(i)"}).encode())

    def refused() -> bool:
        try:
            with flight.connect(uri) as late:
                action(late, "health")
        except flight.FlightUnavailableError:
            return True
        return False

    with capture_logs() as logs, flight.connect(uri) as client:
        reader = client.do_get(ticket)
        first = reader.read_chunk().data
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        wait_until(refused, 20, "new calls refused")
        # still draining: the running query was not cut off, and stop waits for it
        assert stopper.is_alive()
        assert not [e for e in logs if e.get("method") == "do_get"]
        total, count = first.num_rows, pa.compute.sum(first.column(0)).as_py()
        for chunk in reader:
            total += chunk.data.num_rows
            count += pa.compute.sum(chunk.data.column(0)).as_py()
        stopper.join(60)
    assert not stopper.is_alive()
    assert (total, count) == (rows, rows * (rows - 1) // 2)
    [done] = [e for e in logs if e.get("method") == "do_get"]
    assert done["outcome"] == "ok"


def test_an_upload_that_promised_the_end_marker_but_ends_without_it_is_cancelled(
        server: Server, flight_client: flight.FlightClient) -> None:
    """A killed client's stream can end like a finished one; the marker tells them apart."""
    chunk_schema = pa.schema([("chunk", pa.binary())])

    def upload(name: str, marker: bool) -> None:
        command = {"op": "ingest", "name": name, "format": "csv", "end_marker": True}
        writer, results = flight_client.do_put(
            flight.FlightDescriptor.for_command(json.dumps(command)), chunk_schema)
        with writer:
            writer.write_batch(pa.record_batch([pa.array([b"id\n1\n2\n"])], chunk_schema))
            if marker:
                writer.write_metadata(pa.py_buffer(b"flight-lake:end"))
            writer.done_writing()
            results.read()

    with capture_logs() as logs, pytest.raises(flight.FlightCancelledError) as caught:
        upload("cut", marker=False)
    assert json.loads(caught.value.extra_info)["error"] == "cancelled"
    assert [e["event"] for e in logs if e["event"].startswith("ingest_")] == [
        "ingest_cancelled"]
    upload("whole", marker=True)
    assert [m["name"] for m in action(flight_client, "catalog.list")] == ["whole"]
