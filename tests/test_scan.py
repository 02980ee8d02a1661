"""The read path's scan branch on a real lake (local folder, moto S3): objects without DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from flight_lake.catalog import Manifest, Mode
from flight_lake.errors import InvalidInput, NotFound, PermissionDenied, StorageError
from flight_lake.lake import Lake
from flight_lake.result import Result
from flight_lake.settings import Settings, StorageSettings
from tests.support import make_settings


@pytest.fixture
def lake(settings: Settings) -> Iterator[Lake]:
    opened = Lake.open(settings)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def scan_lake(shared_settings: Settings) -> Iterator[Lake]:
    """One lake per backend for the module's read-only cases: ``scanned`` holds 10 rows."""
    opened = Lake.open(shared_settings)
    try:
        put(opened, "scanned", people(10))
        yield opened
    finally:
        opened.close()


def people(rows: int, start: int = 0) -> pa.Table:
    ids = range(start, start + rows)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "when": pa.array([i % 900 for i in ids], pa.date32()),
        "who": pa.array([None if i % 7 == 0 else f"w{i}" for i in ids], pa.string()),
        "ok": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
    })


def put(lake: Lake, name: str, table: pa.Table, mode: Mode = "create") -> Manifest:
    return lake.ingest.ingest_arrow(name, mode, table.schema, table.to_batches())


def read(result: Result) -> pa.Table:
    with result:
        return pa.Table.from_batches(list(result.batches()), schema=result.schema)


def scanned(lake: Lake, sql: str) -> bool:
    """Whether ``lake.read(sql)`` streamed the stored objects (it asked the object cache)."""
    before = lake.objects.hits + lake.objects.misses
    read(lake.read(sql))
    return lake.objects.hits + lake.objects.misses > before


def duckdb_answer(lake: Lake, sql: str) -> pa.Table:
    return lake.query.execute(sql).read_all()


def test_select_star_is_the_objects_decoded_once_then_held_in_memory(lake: Lake) -> None:
    put(lake, "scanned", people(3_000))
    put(lake, "scanned", people(500, start=3_000), mode="append")
    by_duckdb = duckdb_answer(lake, "SELECT * FROM scanned WHERE true")
    objects = lake.objects

    cold = lake.read("SELECT * FROM scanned")
    assert cold.table is None  # decoded as it goes
    assert len(objects) == 0
    cold_table = read(cold)
    assert len(objects) == 2 and objects.hits == 0

    warm = lake.read(' select *  from "SCANNED" ;')
    assert warm.table is not None  # in memory: no decoding
    warm.close()
    assert objects.hits == 2
    for answer in (cold_table, warm.table):
        assert answer.schema == by_duckdb.schema == cold.schema
        assert answer.equals(by_duckdb)  # the objects in order, as DuckDB reads them
    cache = lake.health()["cache"]
    assert cache["arrow"] == {"bytes": objects.nbytes, "objects": 2, "hits": 2, "misses": 2}
    assert cache["max_bytes"] == lake.settings.cache.max_bytes
    assert cache["datasets"]["scanned"]["arrow_bytes"] == objects.nbytes
    assert cache["used_bytes"] <= cache["max_bytes"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM scanned WHERE true",
    "SELECT id FROM scanned",
    "SELECT * FROM scanned LIMIT 1",
    "SELECT DISTINCT * FROM scanned",
    "SELECT * EXCLUDE (ok) FROM scanned",
    "SELECT *, 1 AS one FROM scanned",
    "WITH s AS (SELECT 1) SELECT * FROM scanned",
    "SELECT * FROM scanned USING SAMPLE 50%",
    "SELECT * FROM (SELECT * FROM scanned)",
])
def test_only_a_plain_select_star_of_a_dataset_is_a_scan(scan_lake: Lake, sql: str) -> None:
    assert scanned(scan_lake, "SELECT * FROM scanned")
    assert not scanned(scan_lake, sql)  # DuckDB answered


@pytest.mark.parametrize(("sql", "error"), [
    ("SELECT * FROM scanned; SELECT 1", InvalidInput),
    ("SELECT * FROM absent", NotFound),
    ("SELECT * FROM read_parquet('x')", PermissionDenied),
])
def test_what_is_not_a_query_of_a_dataset_gets_duckdbs_or_the_guards_error(
    scan_lake: Lake, sql: str, error: type[Exception]
) -> None:
    before = scan_lake.objects.hits + scan_lake.objects.misses
    with pytest.raises(error):
        read(scan_lake.read(sql))
    assert scan_lake.objects.hits + scan_lake.objects.misses == before


def test_select_star_is_left_to_duckdb_when_its_schema_differs(lake: Lake) -> None:
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                      "text": pa.array(["a", "bb", None], pa.large_string())})
    put(lake, "wide", table)
    assert not scanned(lake, "SELECT * FROM wide")  # DuckDB says string
    assert lake.read("SELECT * FROM wide").read_all().schema.field("text").type == pa.string()


def test_a_new_version_is_scanned_from_its_new_objects(lake: Lake) -> None:
    put(lake, "scanned", people(300))
    assert read(lake.read("SELECT * FROM scanned")).num_rows == 300
    replacement = people(40, start=1_000)
    put(lake, "scanned", replacement, mode="replace")
    assert scanned(lake, "SELECT * FROM scanned")
    assert read(lake.read("SELECT * FROM scanned")).equals(replacement)

    put(lake, "nothing", people(0))
    empty = lake.read("SELECT * FROM nothing")
    assert read(empty).num_rows == 0
    assert empty.schema == duckdb_answer(lake, "SELECT * FROM nothing WHERE true").schema


def test_dataset_object_is_one_object_of_the_current_manifest(lake: Lake) -> None:
    first = put(lake, "scanned", people(200))
    manifest = put(lake, "scanned", people(50, start=200), mode="append")
    keys = [o.key for o in manifest.objects]
    parts = [read(lake.read_object("scanned", key)) for key in keys]
    assert [p.num_rows for p in parts] == [200, 50]
    assert pa.concat_tables(parts).equals(people(250))
    cached = lake.read_object("scanned", keys[1])
    assert cached.table is not None and cached.table.equals(parts[1])
    cached.close()

    put(lake, "other", people(5))
    with pytest.raises(NotFound, match="not an object of dataset other"):
        lake.read_object("other", keys[0])
    put(lake, "scanned", people(5), mode="replace")
    with pytest.raises(NotFound):
        lake.read_object("scanned", first.objects[0].key)  # no longer current
    with pytest.raises(NotFound):
        lake.read_object("absent", keys[0])
    assert lake.reads.running() == 0  # every refused read was forgotten


def test_scans_without_the_object_cache(storage_settings: StorageSettings, tmp_path: Path) -> None:
    lake = Lake.open(make_settings(storage_settings, tmp_path, cache={"max_bytes": 0}))
    try:
        put(lake, "scanned", people(2_000))
        for _ in range(2):
            result = lake.read("SELECT * FROM scanned")
            assert result.table is None
            assert read(result).equals(people(2_000))
        assert len(lake.objects) == 0 and lake.health()["cache"]["arrow"]["bytes"] == 0
    finally:
        lake.close()


def test_a_lost_object_is_an_error_when_read_not_a_wrong_answer(lake: Lake) -> None:
    manifest = put(lake, "lost", people(100))
    lake.storage.delete(manifest.objects[0].key)
    with pytest.raises((NotFound, StorageError)):  # from DuckDB's schema check or the read
        read(lake.read("SELECT * FROM lost"))
    with pytest.raises((NotFound, StorageError)):
        read(lake.read_object("lost", manifest.objects[0].key))
