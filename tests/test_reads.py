"""The one read path (``Lake.read``): the decision, the deadline and cancellation by read id."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from flight_lake.errors import Cancelled, InvalidInput, QueryTimeout, Unavailable
from flight_lake.lake import Lake
from flight_lake.serve import Server
from flight_lake.settings import Settings, StorageSettings
from tests.support import make_settings, wait_until


@pytest.fixture
def lake(local_storage_settings: StorageSettings, tmp_path: object) -> Iterator[Lake]:
    settings: Settings = make_settings(local_storage_settings, tmp_path,  # type: ignore[arg-type]
                                       query={"batch_rows": 100})
    with Lake(settings) as opened:
        yield opened


def numbers(rows: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + rows), pa.int64())})


def put_parts(lake: Lake, name: str, parts: int, rows: int) -> None:
    """``parts`` data objects of ``rows`` rows each: a scan of them is several batches."""
    for part in range(parts):
        table = numbers(rows, part * rows)
        lake.ingest.ingest_arrow(name, "create" if part == 0 else "append", table.schema,
                                 table.to_batches())


def test_a_lake_is_built_without_threads_then_started_and_closed(
    local_storage_settings: StorageSettings, tmp_path: object
) -> None:
    before = {thread.name for thread in threading.enumerate()}
    lake = Lake(make_settings(local_storage_settings, tmp_path))  # type: ignore[arg-type]
    assert {thread.name for thread in threading.enumerate()} == before
    assert lake.state == "built"
    with pytest.raises(Unavailable):
        lake.read("SELECT 1")
    with lake:
        assert lake.state == "serving"
        assert "query-watchdog" in {thread.name for thread in threading.enumerate()}
        assert lake.read("SELECT 42 AS answer").read_all().to_pylist() == [{"answer": 42}]
        lake.drain()
        assert lake.state == "draining" and lake.health()["status"] == "draining"
    assert lake.state == "closed"


def test_describe_is_the_schema_read_answers_with(lake: Lake) -> None:
    put_parts(lake, "nums", 2, 300)
    for sql in ("SELECT * FROM nums", "SELECT count(*) AS n FROM nums", "SELECT id + 1 FROM nums"):
        with lake.read(sql) as result:
            assert lake.describe(sql) == result.schema == result.read_all().schema


@pytest.mark.parametrize("sql", ["SELECT * FROM nums", "SELECT * FROM nums WHERE id >= 0"])
def test_a_read_is_cancelled_by_its_id_on_both_branches(lake: Lake, sql: str) -> None:
    put_parts(lake, "nums", 3, 300)
    with lake.read(sql, read_id="mine") as result:
        assert result.read_id == "mine" and result.table is None
        batches = result.batches()
        first = next(batches)
        assert first.num_rows > 0
        assert lake.health()["reads_running"] == 1
        assert lake.cancel("mine")
        with pytest.raises(Cancelled):
            for _ in batches:
                pass
    assert lake.health()["reads_running"] == 0
    assert not lake.cancel("mine")  # no longer running
    assert not lake.cancel("never-started")


@pytest.mark.parametrize("sql", ["SELECT * FROM nums", "SELECT * FROM nums WHERE id >= 0"])
def test_the_deadline_applies_to_both_branches(lake: Lake, sql: str) -> None:
    put_parts(lake, "nums", 3, 300)
    # On a busy machine starting the read or its first batch may itself come after the
    # deadline: either way the read must end in QueryTimeout, never run to its end.
    with pytest.raises(QueryTimeout), lake.read(sql, timeout=0.05) as result:
        batches = result.batches()
        next(batches)
        time.sleep(0.1)  # a consumer slower than the deadline
        for _ in batches:
            pass


def test_cancel_stops_every_read_of_an_id(lake: Lake) -> None:
    put_parts(lake, "nums", 3, 300)
    first = lake.read("SELECT * FROM nums WHERE id >= 0", read_id="same")  # one ticket,
    second = lake.read("SELECT * FROM nums", read_id="same")  # read twice at once
    with first, second:
        assert lake.reads.running() == 2
        assert lake.cancel("same")
        for result in (first, second):
            with pytest.raises(Cancelled):
                list(result.batches())
    assert lake.reads.running() == 0
    with pytest.raises(InvalidInput, match="positive"):
        lake.read("SELECT 1", timeout=0)


# 10^12 rows to sum: hours of work on any machine, so it is still running when cancelled.
SLOW_SQL = "SELECT sum(i) AS total FROM range(1000000000000) t(i)"


def test_a_query_running_in_duckdb_is_cancelled_by_its_id(lake: Lake) -> None:
    outcome: list[object] = []

    def run() -> None:
        try:
            with lake.read(SLOW_SQL, read_id="slow", timeout=600) as result:
                outcome.append(result.read_all())
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    wait_until(lambda: lake.health()["reads_running"] == 1, 20, "the slow read registered")
    assert lake.cancel("slow")  # once: even if it lands just before DuckDB starts the query
    reader.join(30)
    assert not reader.is_alive(), "the cancelled read is still running"
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome
    assert lake.health()["reads_running"] == 0
    assert lake.read("SELECT 42 AS answer").read_all().to_pylist() == [{"answer": 42}]


def ledger(version: int) -> pa.Table:
    """Version ``version`` of the hammered dataset: its own row count, every row tagged."""
    rows = 50 + 7 * version
    return pa.table({"tag": pa.array([version] * rows, pa.int64()),
                     "id": pa.array(range(rows), pa.int64())})


def test_readers_see_one_committed_version_while_commits_land(serve: Callable[..., Server]
                                                              ) -> None:
    """Flight and in-process readers, scans and DuckDB, while replace commits land."""
    import json
    import threading

    import pyarrow.flight as flight

    server = serve(http={"enabled": False}, query={"batch_rows": 64})
    lake = server.lake
    assert lake is not None
    commits = 25
    first = ledger(1)
    lake.ingest.ingest_arrow("ledger", "create", first.schema, first.to_batches())
    done = threading.Event()
    answers: list[tuple[str, list[tuple[int, int]]]] = []
    failures: list[BaseException] = []

    def tally(table: pa.Table) -> list[tuple[int, int]]:
        counts: dict[int, int] = {}
        for tag in table.column("tag").to_pylist():
            counts[tag] = counts.get(tag, 0) + 1
        return sorted(counts.items())

    def grouped(table: pa.Table) -> list[tuple[int, int]]:
        return sorted(zip(table.column("tag").to_pylist(), table.column("n").to_pylist(),
                          strict=True))

    scan_sql = "SELECT * FROM ledger"
    group_sql = "SELECT tag, count(*) AS n FROM ledger GROUP BY tag"
    where_sql = "SELECT * FROM ledger WHERE id >= 0"

    def flight_reader() -> None:
        with flight.connect(server.flight_uri) as client:
            while not done.is_set():
                table = client.do_get(flight.Ticket(json.dumps({"sql": scan_sql}))).read_all()
                answers.append(("flight scan", tally(table)))
                descriptor = flight.FlightDescriptor.for_command(json.dumps({"sql": group_sql}))
                info = client.get_flight_info(descriptor)
                table = client.do_get(info.endpoints[0].ticket).read_all()
                answers.append(("flight group", grouped(table)))

    def local_reader() -> None:
        while not done.is_set():
            answers.append(("lake scan", tally(lake.read(scan_sql).read_all())))
            answers.append(("lake where", tally(lake.read(where_sql).read_all())))

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported below, not lost in a thread
                failures.append(exc)
                done.set()
        return run

    readers = [threading.Thread(target=guarded(target))
               for target in (flight_reader, flight_reader, local_reader, local_reader)]
    for reader in readers:
        reader.start()
    try:
        for version in range(2, commits + 1):
            table = ledger(version)
            lake.ingest.ingest_arrow("ledger", "replace", table.schema, table.to_batches())
        # On a busy machine the commits may all land before a reader's first answer: let
        # every kind of read answer at least once before the readers stop.
        kinds = {"flight scan", "flight group", "lake scan", "lake where"}
        wait_until(lambda: failures or kinds <= {where for where, _ in list(answers)}, 120,
                   "every kind of read answered")
    finally:
        done.set()
        for reader in readers:
            reader.join(60)
    assert not failures, failures
    committed = {version: ledger(version).num_rows for version in range(1, commits + 1)}
    for where, counts in answers:
        assert len(counts) == 1, f"{where} mixed versions: {counts}"
        [(tag, rows)] = counts
        assert committed[tag] == rows, f"{where}: version {tag} with {rows} rows"
    last = ledger(commits)
    assert tally(lake.read(scan_sql).read_all()) == [(commits, last.num_rows)]
    assert grouped(lake.read(group_sql).read_all()) == [(commits, last.num_rows)]
