"""The query engine on both backends: answers, views, the in-memory cache, refusals, timeouts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake import query_cache
from flight_lake.catalog import Catalog, DataObject, Manifest, data_prefix, new_version_id
from flight_lake.errors import (
    InvalidInput,
    LakeError,
    NotFound,
    PermissionDenied,
    QueryTimeout,
    Unavailable,
)
from flight_lake.query import QueryEngine
from flight_lake.query_cache import CACHE_PREFIX, parse_bytes
from flight_lake.settings import Settings, StorageSettings
from flight_lake.storage import Storage
from tests.support import make_bucket, make_settings, wait_until

STATES = ["IL", "NY", "CA", "IL", "TX"]
ROLES = ["dev", "ops", "dev", "pm"]


def workers(rows: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + rows))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "state": pa.array([STATES[i % len(STATES)] for i in ids], pa.string()),
        "role": pa.array([ROLES[i % len(ROLES)] for i in ids], pa.string()),
        "salary": pa.array([float(1000 + i) for i in ids], pa.float64()),
    })


def commit(catalog: Catalog, name: str, tables: list[pa.Table], mode: str = "create") -> Manifest:
    """Write each table as one Parquet object and commit them as one version."""
    version_id = new_version_id()
    objects = []
    for number, table in enumerate(tables):
        key = f"{data_prefix(name, version_id)}/part-{number}.parquet"
        with catalog.storage.open_write(key) as handle:
            pq.write_table(table, handle)
        objects.append(DataObject(key=key, size=catalog.storage.size(key),
                                  row_count=table.num_rows))
    schema = tables[0].schema if tables else workers(0).schema
    return catalog.commit(name, mode, schema, objects)  # type: ignore[arg-type]


def rows(engine: QueryEngine, sql: str) -> list[dict]:
    return engine.execute(sql).read_all().to_pylist()


@pytest.fixture
def catalog(storage: Storage) -> Catalog:
    return Catalog(storage)


@pytest.fixture
def engine(storage: Storage, catalog: Catalog, settings: Settings) -> Iterator[QueryEngine]:
    commit(catalog, "workers", [workers(600), workers(400, start=600)])
    query_engine = QueryEngine(storage, catalog, settings).start()
    yield query_engine
    query_engine.close()


@pytest.fixture
def shared_engine(guarded: tuple[QueryEngine, Storage]) -> QueryEngine:
    """The module's engine per backend (``guarded``), for cases that only read."""
    return guarded[0]


# -- answers --------------------------------------------------------------------------


def test_count_and_group_by(shared_engine: QueryEngine) -> None:
    assert rows(shared_engine, "SELECT count(*) FROM workers") == [{"count_star()": 1000}]
    grouped = rows(shared_engine, "SELECT role, count(*) AS n FROM workers WHERE state = 'IL' "
                                  "GROUP BY role ORDER BY role")
    expected: dict[str, int] = {}
    for i in range(1000):
        if STATES[i % 5] == "IL":
            expected[ROLES[i % 4]] = expected.get(ROLES[i % 4], 0) + 1
    assert grouped == [{"role": role, "n": n} for role, n in sorted(expected.items())]
    assert rows(shared_engine, "SELECT salary FROM workers WHERE id = 777") == [{"salary": 1777.0}]


def test_introspection_is_allowed(shared_engine: QueryEngine) -> None:
    assert rows(shared_engine, "SHOW TABLES") == [{"name": "workers"}]
    described = rows(shared_engine, "DESCRIBE workers")
    assert [row["column_name"] for row in described] == ["id", "state", "role", "salary"]
    plan = rows(shared_engine, "EXPLAIN SELECT count(*) FROM workers")
    assert plan and "explain_value" in plan[0]
    assert rows(shared_engine, "SELECT count(*) AS n FROM range(10)") == [{"n": 10}]


def test_schema_is_cheap_and_matches_the_stream(shared_engine: QueryEngine) -> None:
    sql = "SELECT role, avg(salary) AS pay FROM workers GROUP BY role"
    schema = shared_engine.schema(sql)
    assert schema.names == ["role", "pay"]
    assert schema == shared_engine.execute(sql).schema
    # Binding only: a query whose every row fails when run still answers its schema, so
    # the schema never runs it (and one that would take forever answers just as well).
    failing = "SELECT count(*) AS n FROM range(1000000000000) t(i) WHERE error('ran') IS NULL"
    assert shared_engine.schema(failing).names == ["n"]
    with pytest.raises(InvalidInput, match="ran"):
        rows(shared_engine, failing)


def test_errors_name_what_is_wrong(shared_engine: QueryEngine) -> None:
    with pytest.raises(NotFound, match="nope"):
        shared_engine.execute("SELECT * FROM nope")
    with pytest.raises(InvalidInput, match="missing_column"):
        shared_engine.execute("SELECT missing_column FROM workers")
    with pytest.raises(InvalidInput, match="syntax error"):
        shared_engine.execute("SELEC 1")
    with pytest.raises(InvalidInput, match="Conversion"):
        rows(shared_engine, "SELECT 'abc'::INTEGER")
    with pytest.raises(NotFound, match="nope"):
        shared_engine.schema("SELECT * FROM nope")


# -- views ----------------------------------------------------------------------------


def test_views_follow_commits_one_dataset_at_a_time(engine: QueryEngine, catalog: Catalog) -> None:
    commit(catalog, "other", [workers(5)])
    assert rows(engine, "SELECT count(*) AS n FROM other") == [{"n": 5}]
    with capture_logs() as events:
        for _ in range(5):
            rows(engine, "SELECT count(*) FROM workers")
        commit(catalog, "workers", [workers(50, start=1000)], mode="append")
    refreshed = [e for e in events if e["event"] == "query_view_refreshed"]
    assert [(e["dataset"], e["version"]) for e in refreshed] == [("workers", 2)]
    assert rows(engine, "SELECT count(*) AS n, max(id) AS top FROM workers") == [
        {"n": 1050, "top": 1049}
    ]
    # replace swaps the whole object set, and may change the schema
    replacement = pa.table({"id": [1, 2, 3], "note": ["a", "b", "c"]})
    commit(catalog, "workers", [replacement], mode="replace")
    assert rows(engine, "SELECT * FROM workers ORDER BY id") == replacement.to_pylist()
    assert rows(engine, "SELECT count(*) AS n FROM other") == [{"n": 5}]


def test_zero_row_datasets(engine: QueryEngine, catalog: Catalog) -> None:
    commit(catalog, "no_objects", [])
    commit(catalog, "empty_object", [workers(0)])
    for name in ("no_objects", "empty_object"):
        assert rows(engine, f"SELECT count(*) AS n FROM {name}") == [{"n": 0}]
        assert engine.schema(f"SELECT * FROM {name}").names == ["id", "state", "role", "salary"]
        assert engine.execute(f"SELECT * FROM {name}").schema.field("id").type == pa.int64()
    commit(catalog, "no_objects", [workers(3)], mode="append")
    assert rows(engine, "SELECT count(*) AS n FROM no_objects") == [{"n": 3}]


def test_a_new_engine_sees_every_committed_dataset(
    storage: Storage, engine: QueryEngine, settings: Settings
) -> None:
    engine.close()
    restarted = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        assert rows(restarted, "SELECT count(*) AS n FROM workers") == [{"n": 1000}]
    finally:
        restarted.close()


# -- refusals -------------------------------------------------------------------------

WRITES_AND_SETTINGS = [
    "CREATE TABLE copy_of AS SELECT * FROM workers",
    "CREATE OR REPLACE VIEW workers AS SELECT 1 AS x",
    "INSERT INTO workers VALUES (1, 'IL', 'dev', 1.0)",
    "DROP VIEW workers",
    "COPY workers TO '{datasets}/workers/evil.parquet' (FORMAT parquet)",
    "COPY (SELECT 1) TO '{datasets}/evil.csv'",
    "EXPORT DATABASE '{datasets}/export'",
    "ATTACH ':memory:' AS other",
    "SET threads = 1",
    "RESET threads",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE SECRET stolen (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CALL pragma_version()",
    "CHECKPOINT",
    "BEGIN TRANSACTION",
    "EXPLAIN ANALYZE COPY workers TO '{datasets}/evil.csv'",
    "-- comment\nEXPLAIN ANALYZE CREATE TABLE x AS SELECT 1",
]
FILES_AND_SECRETS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "DESCRIBE '/etc/passwd'",
    "SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')",
    "SELECT * FROM read_parquet('{datasets}/workers/*/*.parquet')",
    "SELECT * FROM '{datasets}/workers/x.parquet'",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM workers WHERE EXISTS (SELECT 1 FROM read_blob('/etc/passwd'))",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://bucket/key', 's3')",
    "SELECT * FROM duckdb_settings()",
    "SELECT current_setting('s3_secret_access_key')",
    "SELECT getenv('HOME')",
    "EXPLAIN SELECT * FROM read_csv('/etc/passwd')",
]
MULTIPLE_OR_EMPTY = [
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY workers TO '{datasets}/evil.csv'",
    "",
    "  ;  ",
]


@pytest.fixture(scope="module")
def guarded(shared_settings: Settings) -> Iterator[tuple[QueryEngine, Storage]]:
    """One engine per backend for every refusal and read-only case: each must leave it (and
    storage) as it was."""
    storage = Storage.from_settings(shared_settings.storage)
    catalog = Catalog(storage)
    commit(catalog, "workers", [workers(600), workers(400, start=600)])
    query_engine = QueryEngine(storage, catalog, shared_settings).start()
    yield query_engine, storage
    query_engine.close()


@pytest.mark.parametrize(
    ("sql", "error"),
    [(sql, PermissionDenied) for sql in WRITES_AND_SETTINGS + FILES_AND_SECRETS]
    + [(sql, InvalidInput) for sql in MULTIPLE_OR_EMPTY],
)
def test_refusals_leave_storage_unchanged(
    guarded: tuple[QueryEngine, Storage], sql: str, error: type[LakeError]
) -> None:
    engine, storage = guarded
    before = storage.list()
    statement = sql.format(datasets=storage.url("datasets"))
    with pytest.raises(error):
        engine.execute(statement).read_all()
    with pytest.raises(error):
        engine.schema(statement)
    assert storage.list() == before
    assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1000}]


def test_s3_secrets_cannot_be_read_through_sql(
    s3_endpoint: str, tmp_path: Path
) -> None:
    secret = "not-for-users-4f1c2b"
    storage_settings = StorageSettings(
        uri=f"s3://{make_bucket(s3_endpoint)}/lake", endpoint_url=s3_endpoint,
        access_key_id="testing", secret_access_key=secret,
    )
    settings = make_settings(storage_settings, tmp_path)
    storage = Storage.from_settings(settings.storage)
    catalog = Catalog(storage)
    commit(catalog, "workers", [workers(10)])
    engine = QueryEngine(storage, catalog, settings).start()
    try:
        assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 10}]
        for sql in ("SELECT * FROM duckdb_secrets()", "SELECT * FROM duckdb_settings()",
                    "SELECT current_setting('s3_secret_access_key')"):
            with pytest.raises(PermissionDenied):
                engine.execute(sql)
        # what introspection is allowed does not show it either
        assert secret not in str(rows(engine, "SHOW TABLES"))
        assert secret not in str(rows(engine, "DESCRIBE workers"))
        # and DuckDB itself redacts it (the first layer, behind the guard)
        shown = engine._database.cursor().execute("SELECT * FROM duckdb_secrets()").fetchall()
        assert shown and secret not in str(shown) and "redacted" in str(shown)
    finally:
        engine.close()


# -- timeouts, streaming, concurrency -----------------------------------------------


@pytest.fixture
def quick_settings(storage_settings: StorageSettings, tmp_path: Path) -> Settings:
    return make_settings(storage_settings, tmp_path,
                         query={"timeout_seconds": 0.5, "batch_rows": 1000})


@pytest.fixture
def quick_engine(storage: Storage, catalog: Catalog,
                 quick_settings: Settings) -> Iterator[QueryEngine]:
    commit(catalog, "workers", [workers(5000)])
    query_engine = QueryEngine(storage, catalog, quick_settings).start()
    yield query_engine
    query_engine.close()


def test_slow_query_times_out_and_the_engine_stays_healthy(quick_engine: QueryEngine) -> None:
    # 10^16 rows never finish: that the call returns at all shows the deadline interrupted it
    with pytest.raises(QueryTimeout, match="timeout_seconds"):
        rows(quick_engine, "SELECT count(*) FROM range(100000000) a, range(100000000) b")
    with pytest.raises(QueryTimeout):  # a blocking sort, interrupted inside execute()
        rows(quick_engine, "SELECT * FROM range(10000000000) t(i) ORDER BY i DESC LIMIT 1")
    assert rows(quick_engine, "SELECT count(*) AS n FROM workers") == [{"n": 5000}]


def test_a_stream_past_its_deadline_is_stopped(quick_engine: QueryEngine) -> None:
    with capture_logs() as events:
        reader = quick_engine.execute("SELECT * FROM workers")
        assert reader.read_next_batch().num_rows == 1000
        # a consumer slower than the timeout: the next batch is asked for past the deadline
        wait_until(lambda: any(e["event"] == "query_timeout" for e in events), 20,
                   "the watchdog firing")
    with pytest.raises(QueryTimeout):
        reader.read_next_batch()
    assert rows(quick_engine, "SELECT count(*) AS n FROM workers") == [{"n": 5000}]


def test_results_stream_in_batches(quick_engine: QueryEngine) -> None:
    reader = quick_engine.execute("SELECT * FROM workers")
    sizes = [batch.num_rows for batch in reader]
    assert len(sizes) >= 5 and sum(sizes) == 5000 and max(sizes) <= 1000


def test_the_first_batch_arrives_before_the_result_is_complete(engine: QueryEngine) -> None:
    # 10^10 rows never fit in memory: had the engine materialised them, the call would end in
    # QueryTimeout (or run out of memory) instead of a first batch
    endless = engine.execute("SELECT i, i * 2 AS j FROM range(10000000000) t(i)")
    first = endless.read_next_batch()
    assert first.num_rows > 0
    del endless


def test_concurrent_queries_from_threads(engine: QueryEngine, catalog: Catalog) -> None:
    errors: list[BaseException] = []
    counts: list[int] = []
    start = threading.Barrier(9)

    def ask() -> None:
        start.wait()
        try:
            for _ in range(15):
                grouped = rows(engine, "SELECT state, count(*) AS n FROM workers GROUP BY state")
                counts.append(sum(row["n"] for row in grouped))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    commit(catalog, "workers", [workers(100, start=1000)], mode="append")
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(counts) == 120 and set(counts) <= {1000, 1100}
    assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1100}]


def test_query_settings_reach_duckdb(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    settings = make_settings(local_storage_settings, tmp_path,
                             query={"threads": 1, "memory_limit": "256MB"})
    storage = Storage.from_settings(settings.storage)
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        threads, memory = engine._database.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchone() or (None, None)
        assert threads == 1 and memory.startswith("244")  # 256 MB in MiB
        assert engine._cache.budget == (parse_bytes(memory) or 0) // 2  # tables count against it
    finally:
        engine.close()
    bad = make_settings(local_storage_settings, tmp_path, query={"memory_limit": "lots"})
    with pytest.raises(InvalidInput, match="memory_limit"):
        QueryEngine(storage, Catalog(storage), bad)


def test_closed_engine_is_unavailable(engine: QueryEngine) -> None:
    engine.close()
    with pytest.raises(Unavailable):
        engine.execute("SELECT 1")


# -- the in-memory cache ------------------------------------------------------------


def view_source(engine: QueryEngine, name: str) -> str:
    found = engine._database.cursor().execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()
    assert found is not None
    return str(found[0])


def cache_databases(engine: QueryEngine) -> list[str]:
    return sorted(row[0] for row in engine._database.cursor().execute(
        "SELECT database_name FROM duckdb_databases() WHERE starts_with(database_name, ?)",
        [CACHE_PREFIX]).fetchall())


def typed_rows(rows_count: int, start: int = 0) -> pa.Table:
    """Every kind of column a user might ingest, with nulls."""
    ids = range(start, start + rows_count)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "state": pa.array([None if i % 7 == 0 else STATES[i % 5] for i in ids], pa.string()),
        "note": pa.array([f"a longer note, number {i}" for i in ids], pa.string()),
        "salary": pa.array([None if i % 11 == 0 else i * 1.5 for i in ids], pa.float64()),
        "hired": pa.array([i % 20000 for i in ids], pa.date32()),
        "seen": pa.array([i * 1_000_000 for i in ids], pa.timestamp("us", tz="UTC")),
        "active": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
        "amount": pa.array([i * 100 + 25 for i in ids], pa.decimal128(12, 2)),
        "tags": pa.array([["x", str(i % 4)] for i in ids], pa.list_(pa.string())),
        "small": pa.array([i % 100 for i in ids], pa.int16()),
    })


CACHE_QUERIES = [
    "SELECT * FROM workers",
    "SELECT count(*) FROM workers",
    "SELECT state, count(*) AS n, avg(salary) AS pay, sum(amount) AS total FROM workers "
    "WHERE active GROUP BY state ORDER BY state NULLS FIRST",
    "SELECT * FROM workers WHERE id = 1234",
    "SELECT * FROM workers ORDER BY salary DESC NULLS LAST, id LIMIT 10",
    "SELECT tags, hired, seen FROM workers WHERE note LIKE '%number 99%' ORDER BY id",
    "DESCRIBE workers",
]


def test_cached_and_uncached_answer_alike(
    storage_settings: StorageSettings, storage: Storage, catalog: Catalog, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(query_cache, "CHUNK_ROWS", 700)  # several chunks per object
    commit(catalog, "workers", [typed_rows(1500), typed_rows(1500, start=1500)])
    # a column named like the chunking's own: that dataset is copied an object at a time
    commit(catalog, "odd", [pa.table({"file_row_number": [5, 6, 7], "x": ["a", None, "c"]})])
    cached = QueryEngine(storage, catalog, make_settings(storage_settings, tmp_path)).start()
    plain = QueryEngine(
        storage, catalog, make_settings(storage_settings, tmp_path, cache={"max_bytes": 0})
    ).start()
    try:
        assert cached.wait_cached("workers", timeout=30)
        assert not plain.wait_cached("workers", timeout=0.1)
        assert CACHE_PREFIX in view_source(cached, "workers")
        assert "read_parquet" in view_source(plain, "workers")
        for sql in CACHE_QUERIES:
            from_memory = cached.execute(sql).read_all()
            from_parquet = plain.execute(sql).read_all()
            assert from_memory.schema == from_parquet.schema, sql
            assert from_memory.equals(from_parquet), sql
            assert cached.schema(sql) == plain.schema(sql)
        assert rows(cached, "SELECT count(*) AS n FROM workers") == [{"n": 3000}]
        assert cached.wait_cached("odd", timeout=30)
        assert cached.execute("SELECT * FROM odd").read_all().equals(
            plain.execute("SELECT * FROM odd").read_all())
        # cache copies stay out of the user's table list
        assert rows(cached, "SHOW TABLES") == [{"name": "odd"}, {"name": "workers"}]
    finally:
        cached.close()
        plain.close()


def test_only_datasets_that_queries_read_are_copied(
    engine: QueryEngine, catalog: Catalog
) -> None:
    commit(catalog, "written_only", [workers(100)])
    assert engine._cache.used == 0 and cache_databases(engine) == []
    # a query naming the dataset (here only asking for its schema) starts the copy
    assert engine.schema("SELECT id FROM Workers WHERE salary > 0").names == ["id"]
    assert engine._cache.wait("workers", 1, timeout=30)
    assert CACHE_PREFIX in view_source(engine, "workers")
    assert "read_parquet" in view_source(engine, "written_only")
    assert len(cache_databases(engine)) == 1 and engine._cache.used > 0
    assert rows(engine, "SELECT count(*) AS n FROM written_only") == [{"n": 100}]
    assert engine._cache.wait("written_only", 1, timeout=30)


def test_each_commit_moves_the_view_then_the_new_version_is_cached(
    engine: QueryEngine, catalog: Catalog
) -> None:
    assert engine.wait_cached("workers", timeout=30)
    [first_copy] = cache_databases(engine)
    stream = engine.execute("SELECT * FROM workers")  # reads the first copy
    with capture_logs() as events:
        commit(catalog, "workers", [workers(50, start=1000)], mode="append")
        # at once, before any copy: the commit's view reads the new objects
        assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1050}]
        assert engine.wait_cached("workers", timeout=30)
    assert rows(engine, "SELECT count(*) AS n, max(id) AS top FROM workers") == [
        {"n": 1050, "top": 1049}
    ]
    [second_copy] = cache_databases(engine)  # the old copy was dropped
    assert second_copy != first_copy and engine._cache._copies["workers"].version == 2
    names = [e["event"] for e in events if e["event"].startswith("query_cache")]
    assert names == ["query_cache_dropped", "query_cache_loaded"]
    # a stream that began on the dropped copy still reads all of it
    assert stream.read_all().num_rows == 1000
    # replace with another schema: the same again
    replacement = pa.table({"id": [1, 2, 3], "note": ["a", "b", "c"]})
    commit(catalog, "workers", [replacement], mode="replace")
    assert rows(engine, "SELECT * FROM workers ORDER BY id") == replacement.to_pylist()
    assert engine.wait_cached("workers", timeout=30)
    assert rows(engine, "SELECT * FROM workers ORDER BY id") == replacement.to_pylist()
    assert len(cache_databases(engine)) == 1
    with pytest.raises(NotFound):
        engine.wait_cached("nope")


def test_cache_status_reports_the_budget_and_what_is_in_memory(
    engine: QueryEngine, catalog: Catalog, settings: Settings
) -> None:
    status = engine.cache_status()
    assert status["datasets"] == {} and status["used_bytes"] == 0
    assert 0 < status["budget_bytes"] <= settings.cache.max_bytes
    commit(catalog, "written_only", [workers(100)])
    with capture_logs() as events:
        assert engine.wait_cached("workers", timeout=30)
    [loaded] = [e for e in events if e["event"] == "query_cache_loaded"]
    status = engine.cache_status()
    assert status["datasets"] == {"workers": {"version": 1, "bytes": loaded["bytes"]}}
    assert status["used_bytes"] == loaded["bytes"] > 0
    commit(catalog, "workers", [workers(50, start=1000)], mode="append")
    assert engine.wait_cached("workers", timeout=30)
    status = engine.cache_status()
    assert list(status["datasets"]) == ["workers"]  # never read: written_only stays out
    assert status["datasets"]["workers"]["version"] == 2
    assert status["used_bytes"] == status["datasets"]["workers"]["bytes"]
    assert json.loads(json.dumps(status)) == status  # ready for the health body


def test_a_version_superseded_while_it_loads_is_never_served(
    storage: Storage, catalog: Catalog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(catalog, "workers", [workers(1000)])
    loaded_v1 = threading.Event()
    release = threading.Event()
    original = QueryEngine._serve_from_table

    def held_swap(self: QueryEngine, manifest: Manifest, table: str) -> bool:
        if manifest.version == 1:  # v1's copy is built; hold it before the swap
            loaded_v1.set()
            release.wait(timeout=30)
        return original(self, manifest, table)

    monkeypatch.setattr(QueryEngine, "_serve_from_table", held_swap)
    engine = QueryEngine(storage, catalog, settings).start()
    try:
        assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1000}]
        assert loaded_v1.wait(timeout=30)
        with capture_logs() as events:
            commit(catalog, "workers", [workers(200, start=5000)], mode="replace")
            assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 200}]
            release.set()
            assert engine.wait_cached("workers", timeout=30)
        logged = [(e["event"], e["version"]) for e in events
                  if e["event"].startswith("query_cache")]
        assert logged == [("query_cache_stale", 1), ("query_cache_loaded", 2)]
        assert rows(engine, "SELECT count(*) AS n, min(id) AS low FROM workers") == [
            {"n": 200, "low": 5000}
        ]
        assert len(cache_databases(engine)) == 1
        assert engine._cache._copies["workers"].version == 2
    finally:
        release.set()
        engine.close()


def test_the_budget_is_first_come_and_a_new_version_takes_its_old_share(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    storage = Storage.from_settings(local_storage_settings)
    catalog = Catalog(storage)
    commit(catalog, "a", [workers(20000)])
    commit(catalog, "b", [workers(20000)])
    settings = make_settings(local_storage_settings, tmp_path)
    with capture_logs() as events:
        probe = QueryEngine(storage, catalog, settings).start()
        try:
            assert probe.wait_cached("a", timeout=30)
        finally:
            probe.close()
    [loaded] = [e for e in events if e["event"] == "query_cache_loaded"]
    budget = loaded["bytes"] * 3 // 2  # room for a's copy, not for two of the same size
    settings = make_settings(local_storage_settings, tmp_path, cache={"max_bytes": budget})
    engine = QueryEngine(storage, catalog, settings).start()
    try:
        assert engine._cache.budget == budget
        assert engine.wait_cached("a", timeout=30)
        with capture_logs() as events:
            assert not engine.wait_cached("b", timeout=30)
        [refused] = [e for e in events if e["event"] == "query_cache_over_budget"]
        assert refused["dataset"] == "b" and refused["budget"] == budget
        assert "read_parquet" in view_source(engine, "b")
        assert rows(engine, "SELECT count(*) AS n FROM b") == [{"n": 20000}]
        # a's next version frees a's share first, so it fits again
        commit(catalog, "a", [workers(20000, start=20000)], mode="replace")
        assert engine.wait_cached("a", timeout=30)
        assert engine._cache.used <= budget
        assert rows(engine, "SELECT min(id) AS low FROM a") == [{"low": 20000}]
        assert list(engine._cache._copies) == ["a"] and len(cache_databases(engine)) == 1
    finally:
        engine.close()


def test_a_tiny_budget_keeps_everything_on_parquet(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    storage = Storage.from_settings(local_storage_settings)
    catalog = Catalog(storage)
    commit(catalog, "workers", [workers(1000)])
    settings = make_settings(local_storage_settings, tmp_path, cache={"max_bytes": 1000})
    with capture_logs() as events:
        engine = QueryEngine(storage, catalog, settings).start()
        try:
            assert not engine.wait_cached("workers", timeout=30)
            assert "read_parquet" in view_source(engine, "workers")
            assert cache_databases(engine) == []
            assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1000}]
        finally:
            engine.close()
    [refused] = [e for e in events if e["event"] == "query_cache_over_budget"]
    assert refused["estimated_bytes"] > 1000 and "loaded_bytes" not in refused


def test_zero_turns_the_cache_off(local_settings: Settings, tmp_path: Path) -> None:
    settings = make_settings(local_settings.storage, tmp_path, cache={"max_bytes": 0})
    storage = Storage.from_settings(settings.storage)
    catalog = Catalog(storage)
    commit(catalog, "workers", [workers(10)])
    engine = QueryEngine(storage, catalog, settings).start()
    try:
        assert engine._cache.budget == 0
        assert engine._cache._thread is None  # no worker at all
        assert engine.cache_status() == {"budget_bytes": 0, "used_bytes": 0, "datasets": {}}
        assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 10}]
        assert not engine.wait_cached("workers", timeout=5)
        commit(catalog, "workers", [workers(5, start=10)], mode="append")
        assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 15}]
        assert "read_parquet" in view_source(engine, "workers")
        assert cache_databases(engine) == []
    finally:
        engine.close()


def test_cache_copies_are_read_only_for_users(guarded: tuple[QueryEngine, Storage]) -> None:
    engine, storage = guarded
    assert engine.wait_cached("workers", timeout=30)
    [database] = cache_databases(engine)
    copy = f'"{database}".main.workers'
    for sql in (f"DROP TABLE {copy}", f"INSERT INTO {copy} SELECT * FROM workers",
                f"DELETE FROM {copy}", f"UPDATE {copy} SET salary = 0",
                f'DETACH "{database}"', f'USE "{database}"',
                f'CREATE TABLE "{database}".main.mine AS SELECT 1 AS x',
                f"CREATE OR REPLACE VIEW workers AS SELECT * FROM {copy} LIMIT 1",
                f"COPY {copy} TO '{storage.url('datasets')}/leak.csv'"):
        with pytest.raises(PermissionDenied):
            engine.execute(sql)
    # a copy is not a dataset: only datasets are reachable (tests/adversarial)
    with pytest.raises(PermissionDenied):
        engine.execute(f"SELECT count(*) AS n FROM {copy}")
    assert rows(engine, "SELECT count(*) AS n FROM workers") == [{"n": 1000}]
    assert cache_databases(engine) == [database]


def test_close_stops_the_worker(engine: QueryEngine, catalog: Catalog) -> None:
    worker = engine._cache._thread
    assert worker is not None and worker.is_alive()
    commit(catalog, "other", [workers(20000)])
    rows(engine, "SELECT count(*) FROM other")  # likely still loading: close interrupts it
    engine.close()
    assert not worker.is_alive()
    assert not engine.wait_cached("other", timeout=0.1)
    with pytest.raises(Unavailable):
        engine.execute("SELECT 1")


def test_parse_bytes_reads_duckdb_sizes() -> None:
    assert parse_bytes("244.1 MiB") == int(244.1 * 2**20)
    assert parse_bytes("18.8 GiB") == int(18.8 * 2**30)
    assert parse_bytes("512 bytes") == 512
    assert parse_bytes("4GB") == 4 * 10**9
    assert parse_bytes("unlimited") is None


def test_a_copy_keeps_strings_of_many_values_uncompressed(
    storage: Storage, catalog: Catalog, settings: Settings
) -> None:
    table = pa.table({
        "id": pa.array(range(2_000), pa.int64()),
        "email": [f"worker{i}@example.com" for i in range(2_000)],  # every value distinct
        "state": [STATES[i % len(STATES)] for i in range(2_000)],  # a handful of values
    })
    commit(catalog, "people", [table])
    with QueryEngine(storage, catalog, settings) as engine:
        assert engine.wait_cached("people", timeout=30)
        [database] = cache_databases(engine)
        stored = dict(engine._database.cursor().execute(
            "SELECT column_name, list(DISTINCT compression) FROM pragma_storage_info(?) "
            "GROUP BY column_name", [f'"{database}".main.people']).fetchall())
        assert "Uncompressed" in stored["email"]
        assert "Uncompressed" not in stored["state"]  # dictionary-compressed
        assert rows(engine, "SELECT count(DISTINCT email) AS n FROM people") == [{"n": 2_000}]
