"""The scan service over a real lake (local folder and moto S3): objects served without DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from flight_lake.catalog import Manifest, Mode
from flight_lake.errors import NotFound, StorageError
from flight_lake.lake import Lake
from flight_lake.scan import Scan
from flight_lake.settings import Settings, StorageSettings
from tests.support import make_settings


@pytest.fixture
def lake(settings: Settings) -> Iterator[Lake]:
    opened = Lake.open(settings)
    try:
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


def read(scan: Scan) -> pa.Table:
    return pa.Table.from_batches(list(scan.batches()), schema=scan.schema)


def duckdb_answer(lake: Lake, sql: str) -> pa.Table:
    return lake.query.execute(sql).read_all()


def test_select_star_is_the_objects_decoded_once_then_held_in_memory(lake: Lake) -> None:
    put(lake, "scanned", people(3_000))
    put(lake, "scanned", people(500, start=3_000), mode="append")
    by_duckdb = duckdb_answer(lake, "SELECT * FROM scanned WHERE true")
    objects = lake.scans.objects

    cold = lake.scans.whole_dataset("SELECT * FROM scanned")
    assert cold is not None and not isinstance(cold.data, pa.Table)  # decoded as it goes
    assert len(objects) == 0
    cold_table = read(cold)
    assert len(objects) == 2 and objects.hits == 0

    warm = lake.scans.whole_dataset(' select *  from "SCANNED" ;')
    assert warm is not None and isinstance(warm.data, pa.Table)  # in memory: no decoding
    assert objects.hits == 2
    for answer in (cold_table, warm.data):
        assert answer.schema == by_duckdb.schema == cold.schema
        assert answer.equals(by_duckdb)  # the objects in order, as DuckDB reads them
    assert lake.health()["object_cache"] == {
        "bytes": objects.nbytes, "limit": lake.settings.flight.object_cache_bytes,
        "objects": 2, "hits": 2, "misses": 2}


@pytest.mark.parametrize("sql", [
    "SELECT * FROM scanned WHERE true",
    "SELECT id FROM scanned",
    "SELECT * FROM scanned LIMIT 1",
    "SELECT * FROM scanned; SELECT 1",
    "SELECT * FROM absent",
    "SELECT * FROM read_parquet('x')",
])
def test_only_a_plain_select_star_of_a_dataset_is_a_scan(lake: Lake, sql: str) -> None:
    put(lake, "scanned", people(10))
    assert lake.scans.whole_dataset(sql) is None


def test_select_star_is_left_to_duckdb_when_its_schema_differs(lake: Lake) -> None:
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                      "text": pa.array(["a", "bb", None], pa.large_string())})
    put(lake, "wide", table)
    assert lake.scans.whole_dataset("SELECT * FROM wide") is None  # DuckDB says string


def test_a_new_version_is_scanned_from_its_new_objects(lake: Lake) -> None:
    put(lake, "scanned", people(300))
    first = lake.scans.whole_dataset("SELECT * FROM scanned")
    assert first is not None and read(first).num_rows == 300
    replacement = people(40, start=1_000)
    put(lake, "scanned", replacement, mode="replace")
    second = lake.scans.whole_dataset("SELECT * FROM scanned")
    assert second is not None and read(second).equals(replacement)

    put(lake, "nothing", people(0))
    empty = lake.scans.whole_dataset("SELECT * FROM nothing")
    assert empty is not None and read(empty).num_rows == 0
    assert empty.schema == duckdb_answer(lake, "SELECT * FROM nothing WHERE true").schema


def test_dataset_object_is_one_object_of_the_current_manifest(lake: Lake) -> None:
    first = put(lake, "scanned", people(200))
    manifest = put(lake, "scanned", people(50, start=200), mode="append")
    keys = [o.key for o in manifest.objects]
    parts = [read(lake.scans.dataset_object("scanned", key)) for key in keys]
    assert [p.num_rows for p in parts] == [200, 50]
    assert pa.concat_tables(parts).equals(people(250))
    cached = lake.scans.dataset_object("scanned", keys[1])
    assert isinstance(cached.data, pa.Table) and cached.data.equals(parts[1])

    put(lake, "other", people(5))
    with pytest.raises(NotFound, match="not an object of dataset other"):
        lake.scans.dataset_object("other", keys[0])
    put(lake, "scanned", people(5), mode="replace")
    with pytest.raises(NotFound):
        lake.scans.dataset_object("scanned", first.objects[0].key)  # no longer current
    with pytest.raises(NotFound):
        lake.scans.dataset_object("absent", keys[0])


def test_scans_without_the_object_cache(storage_settings: StorageSettings, tmp_path: Path) -> None:
    lake = Lake.open(make_settings(storage_settings, tmp_path, flight={"object_cache_bytes": 0}))
    try:
        put(lake, "scanned", people(2_000))
        for _ in range(2):
            scan = lake.scans.whole_dataset("SELECT * FROM scanned")
            assert scan is not None and not isinstance(scan.data, pa.Table)
            assert read(scan).equals(people(2_000))
        assert len(lake.scans.objects) == 0 and lake.health()["object_cache"]["bytes"] == 0
    finally:
        lake.close()


def test_a_lost_object_is_an_error_when_read_not_a_wrong_answer(lake: Lake) -> None:
    manifest = put(lake, "lost", people(100))
    lake.storage.delete(manifest.objects[0].key)
    with pytest.raises((NotFound, StorageError)):  # from DuckDB's schema check or the read
        scan = lake.scans.whole_dataset("SELECT * FROM lost")
        assert scan is not None
        read(scan)
    with pytest.raises((NotFound, StorageError)):
        read(lake.scans.dataset_object("lost", manifest.objects[0].key))
