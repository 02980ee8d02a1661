"""Finding 5: SQL reaches the catalog's datasets and pure functions, nothing else.

The guard works from an allow-list (datasets, the query's own CTEs, a few generators and
pure functions); every hardening setting is checked on the cursor that runs a query,
not on the connection that set it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_lake.catalog import Catalog, DataObject, data_prefix, new_version_id
from flight_lake.errors import NotFound, PermissionDenied
from flight_lake.query import QueryEngine
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from tests.support import make_settings, s3_storage


def _commit(catalog: Catalog, name: str, table: pa.Table) -> None:
    key = f"{data_prefix(name, new_version_id())}/part-0.parquet"
    with catalog.storage.open_write(key) as handle:
        pq.write_table(table, handle)
    catalog.commit(name, "create", table.schema,
                   [DataObject(key=key, size=catalog.storage.size(key), row_count=len(table))])


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryEngine]:
    """One engine for the module: no test here changes it."""
    tmp_path = tmp_path_factory.mktemp("hostile_sql")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             cache={"max_bytes": 0})
    storage = Storage.from_settings(settings.storage)
    catalog = Catalog(storage)
    _commit(catalog, "workers", pa.table({"id": [1, 2, 3], "state": ["IL", "NY", "IL"]}))
    query_engine = QueryEngine(storage, catalog, settings).start()
    yield query_engine
    query_engine.close()


OUTSIDE_THE_DATASETS = [
    "SELECT * FROM pg_catalog.pg_settings",
    "SELECT * FROM pg_settings",
    "SELECT name, setting FROM pg_settings WHERE name = 'allowed_directories'",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.columns",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM pragma_table_info('workers')",
    "SELECT * FROM system.main.workers",
    "SHOW ALL TABLES",
    "SHOW databases",
    "PRAGMA show_tables",
    "PRAGMA database_list",
    "SELECT current_database()",
    "SELECT current_schemas(true)",
    "SELECT pg_catalog.current_setting('threads')",
    "SELECT pg_get_viewdef(1)",
    "SELECT * FROM workers WHERE id IN (SELECT 1 FROM pg_settings)",
    "WITH s AS (SELECT * FROM pg_settings) SELECT * FROM s",
    "EXPLAIN SELECT * FROM pg_settings",
    "DESCRIBE SELECT * FROM pg_settings",
    "SUMMARIZE pg_settings",
]


@pytest.mark.parametrize("sql", OUTSIDE_THE_DATASETS)
def test_only_datasets_are_reachable(engine: QueryEngine, sql: str) -> None:
    with pytest.raises((PermissionDenied, NotFound)):
        engine.execute(sql).read_all()
    with pytest.raises((PermissionDenied, NotFound)):
        engine.schema(sql)


def test_what_stays_allowed(engine: QueryEngine) -> None:
    def rows(sql: str) -> list[dict]:
        return engine.execute(sql).read_all().to_pylist()

    assert rows("SELECT count(*) AS n FROM workers") == [{"n": 3}]
    assert rows("SELECT count(*) AS n FROM main.workers") == [{"n": 3}]
    assert rows('SELECT count(*) AS n FROM "memory"."main"."workers"') == [{"n": 3}]
    assert rows("WITH il AS (SELECT * FROM workers WHERE state = 'IL') "
                "SELECT count(*) AS n FROM il") == [{"n": 2}]
    assert rows("SHOW TABLES") == [{"name": "workers"}]
    assert [r["column_name"] for r in rows("DESCRIBE workers")] == ["id", "state"]
    assert rows("SUMMARIZE workers")
    assert rows("SELECT sum(x) AS s FROM range(4) t(x)") == [{"s": 6}]
    assert rows("SELECT upper(state) AS s, row_number() OVER (ORDER BY id) AS r, "
                "list_transform([id], v -> v + 1) AS l FROM workers ORDER BY id LIMIT 1") \
        == [{"s": "IL", "r": 1, "l": [2]}]


def test_an_unknown_table_is_an_unknown_dataset(engine: QueryEngine) -> None:
    with pytest.raises(NotFound, match="nope"):
        engine.execute("SELECT * FROM nope")


# Each hardening setting as a query's own cursor sees it (a cursor is a new DuckDB
# connection: a session-scoped SET on the engine's connection does not reach it).
HARDENED = {
    "enable_external_access": False,
    "lock_configuration": True,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
}


def _as_seen_by_a_query(engine: QueryEngine, setting: str) -> object:
    cursor = engine._cursor()  # the very cursor kind execute() runs a query on
    try:
        row = cursor.execute("SELECT current_setting(?)", [setting]).fetchone()
    finally:
        cursor.close()
    assert row is not None
    return row[0]


def test_hardening_holds_on_the_query_cursor_locally(engine: QueryEngine) -> None:
    for setting, expected in HARDENED.items():
        assert _as_seen_by_a_query(engine, setting) == expected, setting
    allowed = _as_seen_by_a_query(engine, "allowed_directories")
    spill = os.path.abspath(str(_as_seen_by_a_query(engine, "temp_directory")))
    assert isinstance(allowed, list) and allowed
    # the datasets, and DuckDB's own spill folder (which DuckDB always adds)
    assert all(path.rstrip("/").endswith("/datasets") or path.rstrip("/") == spill
               for path in allowed), allowed


def test_hardening_holds_on_the_query_cursor_on_s3(s3_endpoint: str, tmp_path: Path) -> None:
    storage_settings = s3_storage(s3_endpoint)
    settings = make_settings(storage_settings, tmp_path)
    storage = Storage.from_settings(settings.storage)
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        for setting, expected in {**HARDENED, "enable_global_s3_configuration": False}.items():
            assert _as_seen_by_a_query(engine, setting) == expected, setting
    finally:
        engine.close()
