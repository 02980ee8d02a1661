"""Each dataset is also an Iceberg table: every version a snapshot, read by other engines.

One lake per backend (local folder, moto S3) holds three datasets with history: ``events``
(CSV: create, append, replace with another schema, append), ``nested`` (Arrow with struct,
list and map columns: create, replace) and ``legacy`` (Parquet without field IDs, registered:
create, append). pyiceberg, DuckDB's ``iceberg_scan``, polars and Daft each read every
dataset's current version and an older one, compared with the version's own objects.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.table import StaticTable, Table
from structlog.testing import capture_logs
from typer.testing import CliRunner

from flight_lake.catalog import Catalog
from flight_lake.cli import app
from flight_lake.iceberg import snapshots
from flight_lake.iceberg.layout import file_io_properties, hint_key, metadata_key, table_url
from flight_lake.iceberg.snapshots import VERSION_PROPERTY
from flight_lake.iceberg.tables import IcebergTables
from flight_lake.lake import Lake
from flight_lake.layout import Layout
from flight_lake.settings import IcebergSettings, Settings, StorageSettings
from flight_lake.storage import Storage
from tests.support import make_settings

CSV_V1 = b"id,name,day,amount\n1,ada,2024-01-02,1.5\n2,bob,2024-02-03,\n"
CSV_V2 = b"id,name,day,amount\n3,cy,2024-03-04,7.25\n"
CSV_V3 = b"id,note\n10,x\n11,y\n12,z\n"
CSV_V4 = b"id,note\n13,w\n"
NESTED = pa.table({
    "id": pa.array([1, 2], pa.int64()),
    "point": pa.array([{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": None}]),
    "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
    "attrs": pa.array([[("k", 1)], [("k", 2), ("j", 3)]], pa.map_(pa.string(), pa.int64())),
})
ZONES_V1 = b"id,state,score\n1,IL,3\n2,NY,\n3,IL,5\n4,,1\n"
ZONES_V2 = b"id,state,score\n5,NY,2\n6,Tierra del Fuego Province,9\n"
LEGACY = pa.table({"id": pa.array([1, 2], pa.int64()), "city": ["Oslo", "Lima"]})


@contextlib.contextmanager
def lake_with_history(settings: Settings) -> Iterator[Lake]:
    """The three datasets with their history, written through a started ``Lake``."""
    with Lake(settings) as lake:
        for mode, body, layout in (("create", CSV_V1, None), ("append", CSV_V2, None),
                                   ("replace", CSV_V3, Layout(partition_by=["note"])),
                                   ("append", CSV_V4, None)):
            lake.ingest.ingest_csv("events", mode, [body], layout=layout)
        lake.ingest.ingest_arrow("nested", "create", NESTED.schema, NESTED.to_batches())
        zones = Layout(partition_by=["state"], sort_by=["id"])
        lake.ingest.ingest_csv("zones", "create", [ZONES_V1], layout=zones)
        lake.ingest.ingest_csv("zones", "append", [ZONES_V2])  # keeps the layout
        replaced = NESTED.slice(1)
        lake.ingest.ingest_arrow("nested", "replace", replaced.schema, replaced.to_batches())
        for version, rows in enumerate((LEGACY, LEGACY.slice(1)), start=1):
            key = f"datasets/legacy/operator-{version}/data.parquet"
            lake.storage.put(key, _parquet(rows))  # written by hand: no field IDs
            lake.catalog.register("legacy", [key], mode="create" if version == 1 else "append")
        yield lake


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def expected(lake: Lake, name: str, version: int) -> pa.Table:
    """What version ``version`` of ``name`` holds: its manifest's objects, read directly."""
    manifest = lake.catalog.manifest(name, version)
    tables = [pq.read_table(io.BytesIO(lake.storage.get(o.key))) for o in manifest.objects]
    return pa.concat_tables(tables).cast(manifest.arrow_schema())


def static_table(lake: Lake, name: str) -> StaticTable:
    """The table as any pyiceberg user opens it: from the folder, through version-hint.text."""
    return StaticTable.from_metadata(table_url(lake.storage, name),
                                     file_io_properties(lake.settings.storage))


def snapshot_id(table: Table, version: int) -> int:
    return next(s.snapshot_id for s in table.snapshots()
                if s.summary is not None and s.summary[VERSION_PROPERTY] == str(version))


def same(actual: pa.Table, wanted: pa.Table, columns: list[str] | None = None) -> None:
    """Equal rows (in id order), whatever string and list flavours the reader chose."""
    columns = columns or wanted.column_names
    wanted = wanted.select(columns).sort_by("id")
    actual = actual.select(columns).cast(wanted.schema).sort_by("id")
    assert actual.to_pylist() == wanted.to_pylist()


def read_pyiceberg(lake: Lake, name: str, version: int | None) -> pa.Table:
    table = static_table(lake, name)
    if version is None:
        return table.scan().to_arrow()
    return table.scan(snapshot_id=snapshot_id(table, version)).to_arrow()


def read_duckdb(lake: Lake, name: str, version: int | None) -> pa.Table:
    pinned = f", version => '{version}'" if version is not None else ""
    url = table_url(lake.storage, name)
    return _duckdb(lake).sql(f"SELECT * FROM iceberg_scan('{url}'{pinned})").to_arrow_table()


@functools.cache
def _duckdb(lake: Lake) -> duckdb.DuckDBPyConnection:
    """One connection per lake with the iceberg extension from its PyPI wheel (and avro,
    which it needs), loaded by path: nothing is downloaded."""
    connection = duckdb.connect()
    lake.storage.configure_duckdb(connection)  # S3: httpfs and the storage's secret
    for extension in ("avro", "iceberg"):
        package = __import__(f"duckdb_extension_{extension}")
        connection.load_extension(os.path.join(
            os.path.dirname(package.__file__), "extensions", f"v{duckdb.__version__}",
            f"{extension}.duckdb_extension"))
    return connection


def read_polars(lake: Lake, name: str, version: int | None) -> pa.Table:
    import polars as pl

    table = static_table(lake, name)
    snapshot = None if version is None else snapshot_id(table, version)
    return pl.scan_iceberg(table, snapshot_id=snapshot,
                           storage_options=_object_store_options(lake.settings.storage)
                           ).collect().to_arrow()


def read_daft(lake: Lake, name: str, version: int | None) -> pa.Table:
    import daft

    table = static_table(lake, name)
    snapshot = None if version is None else snapshot_id(table, version)
    return daft.read_iceberg(table, snapshot_id=snapshot,
                             io_config=_daft_io(lake.settings.storage)).to_arrow()


def _object_store_options(settings: StorageSettings) -> dict[str, str] | None:
    if settings.endpoint_url is None:
        return None
    assert settings.access_key_id and settings.secret_access_key
    return {"aws_endpoint_url": settings.endpoint_url, "aws_region": settings.region,
            "aws_access_key_id": settings.access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.secret_access_key.get_secret_value(),
            "aws_allow_http": "true"}


def _daft_io(settings: StorageSettings) -> Any:
    from daft.io import IOConfig, S3Config

    if settings.endpoint_url is None:
        return None
    assert settings.access_key_id and settings.secret_access_key
    return IOConfig(s3=S3Config(endpoint_url=settings.endpoint_url,
                                region_name=settings.region,
                                key_id=settings.access_key_id.get_secret_value(),
                                access_key=settings.secret_access_key.get_secret_value()))


READERS: dict[str, Callable[[Lake, str, int | None], pa.Table]] = {
    "pyiceberg": read_pyiceberg, "duckdb": read_duckdb, "polars": read_polars,
    "daft": read_daft,
}
# Columns each reader is compared on in ``nested``: polars has no map type.
NESTED_COLUMNS = {"polars": ["id", "point", "tags"]}


@pytest.mark.slow  # four readers, two of them heavy to import; several seconds on S3
def test_every_version_is_a_snapshot_that_every_reader_reads(
        backend_storage_settings: StorageSettings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")  # no optional planner plugin
    with lake_with_history(make_settings(backend_storage_settings, tmp_path)) as lake:
        events = static_table(lake, "events")
        kinds = {int(s.summary[VERSION_PROPERTY]): s.summary.operation.value
                 for s in events.snapshots() if s.summary is not None}
        assert kinds == {1: "append", 2: "append", 3: "overwrite", 4: "append"}
        assert events.metadata_location.endswith("/v4.metadata.json")
        assert lake.storage.get(hint_key("events")) == b"4"
        # The replace changed the schema: the older snapshots keep theirs.
        assert [f.name for f in events.schema().fields] == ["id", "note"]
        assert len(events.metadata.schemas) == 2
        # ... and its layout: partitioned by note from version 3 on.
        assert [f.name for f in events.spec().fields] == ["note"]
        assert len(events.metadata.partition_specs) == 2

        for name in ("events", "nested"):  # the objects carry the table's field IDs
            key = lake.catalog.get(name).objects[0].key
            written = pq.read_schema(io.BytesIO(lake.storage.get(key)))
            assert pyarrow_to_schema(written).as_struct() == \
                static_table(lake, name).schema().as_struct()
        # A layout's partition columns are the table's identity partitions; every object's
        # partition value is its folder's (the long one too: whole values in the stats).
        zones = static_table(lake, "zones")
        assert [(f.name, str(f.transform)) for f in zones.spec().fields] == \
            [("state", "identity")]
        assert [zones.schema().find_column_name(f.source_id)
                for f in zones.sort_order().fields] == ["state", "id"]
        partitions = {task.file.partition[0] for task in zones.scan().plan_files()}
        assert partitions == {"IL", "NY", None, "Tierra del Fuego Province"}
        assert zones.scan(row_filter="state == 'NY'").to_arrow().num_rows == 2
        # Objects without field IDs (``legacy``) are read through the name mapping.
        mapping = static_table(lake, "legacy").metadata.name_mapping()
        assert mapping is not None and [f.names for f in mapping] == [["id"], ["city"]]

        for reader, read in READERS.items():
            for name, older in (("events", 2), ("nested", 1), ("zones", 1), ("legacy", 1)):
                if (reader, lake.storage.backend, name) == ("daft", "s3", "legacy"):
                    continue  # Daft reads S3 objects by field ID only (docs/ICEBERG.md)
                latest = lake.catalog.get(name).version
                columns = NESTED_COLUMNS.get(reader) if name == "nested" else None
                same(read(lake, name, None), expected(lake, name, latest), columns)
                same(read(lake, name, older), expected(lake, name, older), columns)


def test_a_schema_iceberg_cannot_hold_leaves_the_dataset_without_a_table(
        local_settings: Settings) -> None:
    unsigned = pa.table({"at": pa.array([1], pa.timestamp("ns"))})  # format 2: µs at most
    with Lake(local_settings) as lake, capture_logs() as logs:
        manifest = lake.ingest.ingest_arrow("wide", "create", unsigned.schema,
                                            unsigned.to_batches())
        assert manifest.version == 1  # committed all the same
        assert not lake.storage.exists(metadata_key("wide", 1))
    assert any(entry["event"] == "iceberg_unsupported" for entry in logs)


def test_a_lake_with_the_mirror_off_writes_no_table(local_settings: Settings) -> None:
    settings = local_settings.model_copy(update={"iceberg": IcebergSettings(enabled=False)})
    with Lake(settings) as lake:
        lake.ingest.ingest_csv("quiet", "create", [CSV_V1])
        assert lake.catalog.get("quiet").version == 1
        assert lake.storage.list("_iceberg") == []
        assert lake.iceberg.sync("quiet") == 1  # what flight-lake iceberg sync does later


def test_the_metadata_keeps_the_newest_snapshots_and_merges_manifests(
        local_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``iceberg.snapshots_kept`` the oldest snapshots leave the current metadata (an
    older version is still read from its own metadata file), and appends merge manifests:
    a commit's cost no longer grows with the table's history."""
    monkeypatch.setattr(snapshots, "MERGE_MANIFESTS_AT", 3)
    settings = local_settings.model_copy(
        update={"iceberg": IcebergSettings(snapshots_kept=3)})
    with Lake(settings) as lake:
        lake.ingest.ingest_csv("grow", "create", [CSV_V1])
        for _ in range(5):
            lake.ingest.ingest_csv("grow", "append", [CSV_V2])
        table = static_table(lake, "grow")
        assert [s.summary[VERSION_PROPERTY] for s in table.snapshots()
                if s.summary is not None] == ["4", "5", "6"]
        same(table.scan().to_arrow(), expected(lake, "grow", 6))
        current = table.current_snapshot()
        assert current is not None and len(current.manifests(table.io)) < 6
        older = StaticTable.from_metadata(lake.storage.url(metadata_key("grow", 2)))
        same(older.scan().to_arrow(), expected(lake, "grow", 2))


def test_sync_rebuilds_missing_and_stale_tables(local_settings: Settings) -> None:
    storage = Storage.from_settings(local_settings.storage)
    catalog = Catalog(storage)  # commits with no mirror: a lake from before the tables
    for name in ("one", "two"):
        catalog.commit(name, "create", LEGACY.schema, [_register(storage, name, 1)])
        catalog.commit(name, "append", LEGACY.schema, [_register(storage, name, 2)])
    tables = IcebergTables(storage, catalog, local_settings.storage)
    assert tables.sync("two") == 2
    storage.put(hint_key("two"), b"1")  # a hint left behind

    logging = structlog.get_config()
    try:
        result = CliRunner().invoke(app, ["iceberg", "sync", "--storage",
                                          local_settings.storage.uri])
        unknown = CliRunner().invoke(app, ["iceberg", "sync", "nothing", "--storage",
                                           local_settings.storage.uri])
    finally:
        structlog.configure(**logging)  # the command logs to CliRunner's stderr, now closed

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["one: version 2", "two: version 2"]
    assert unknown.exit_code == 4 and "unknown dataset: nothing" in unknown.stderr
    for name in ("one", "two"):
        assert storage.get(hint_key(name)) == b"2"
        table = StaticTable.from_metadata(table_url(storage, name))
        assert table.scan().to_arrow().num_rows == 2 * LEGACY.num_rows
        assert [s.summary[VERSION_PROPERTY] for s in table.snapshots() if s.summary] == \
            ["1", "2"]


def _register(storage: Storage, name: str, version: int) -> Any:
    from flight_lake.catalog import DataObject

    key = f"datasets/{name}/by-hand-{version}/data.parquet"
    data = _parquet(LEGACY)
    storage.put(key, data)
    return DataObject(key=key, size=len(data), row_count=LEGACY.num_rows)


@pytest.mark.slow  # two processes, each importing pyiceberg
def test_two_processes_syncing_at_once_write_one_chain(
        s3_storage_settings: StorageSettings, tmp_path: Path) -> None:
    """Versions committed with no mirror, then ``flight-lake iceberg sync`` in two processes
    at once over S3 (a folder takes the same path with a hard link for the create-only put,
    raced by threads below): every metadata file is created once, each on the one before."""
    storage = Storage.from_settings(s3_storage_settings)
    catalog = Catalog(storage)
    catalog.commit("race", "create", LEGACY.schema, [_register(storage, "race", 1)])
    for version in range(2, 7):
        catalog.commit("race", "append", LEGACY.schema, [_register(storage, "race", version)])
    environment = {**os.environ, **_storage_environment(s3_storage_settings)}
    processes = [subprocess.Popen([sys.executable, "-m", "flight_lake", "iceberg", "sync"],
                                  cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs == [b"race: version 6\n"] * 2
    assert_one_chain(storage, catalog, s3_storage_settings, "race")


def _storage_environment(settings: StorageSettings) -> dict[str, str]:
    environment = {"FLIGHT_LAKE_STORAGE__URI": settings.uri}
    if settings.endpoint_url:
        assert settings.access_key_id and settings.secret_access_key
        environment |= {
            "FLIGHT_LAKE_STORAGE__ENDPOINT_URL": settings.endpoint_url,
            "FLIGHT_LAKE_STORAGE__REGION": settings.region,
            "FLIGHT_LAKE_STORAGE__ACCESS_KEY_ID": settings.access_key_id.get_secret_value(),
            "FLIGHT_LAKE_STORAGE__SECRET_ACCESS_KEY":
                settings.secret_access_key.get_secret_value()}
    return environment


def assert_one_chain(storage: Storage, catalog: Catalog, settings: StorageSettings,
                     name: str) -> None:
    """The table's newest metadata is the newest version's, and each version's snapshot
    follows the one of the version before, holding that version's rows."""
    latest = catalog.history(name)[-1]
    assert storage.get(hint_key(name)) == str(latest).encode()
    table = StaticTable.from_metadata(table_url(storage, name), file_io_properties(settings))
    assert table.metadata_location.endswith(f"/v{latest}.metadata.json")
    parent = None
    for version in range(1, latest + 1):
        snapshot = table.snapshot_by_id(snapshot_id(table, version))
        assert snapshot is not None and snapshot.parent_snapshot_id == parent
        rows = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().num_rows
        assert rows == catalog.manifest(name, version).row_count
        parent = snapshot.snapshot_id


def test_two_servers_mirroring_at_once_agree(
        backend_storage_settings: StorageSettings) -> None:
    """Two catalogs over one storage (as two replicas) append in turn from two threads,
    each mirroring after its own commits: one chain of snapshots, one per version."""
    storage = Storage.from_settings(backend_storage_settings)
    replicas = []
    for _ in range(2):
        catalog = Catalog(Storage.from_settings(backend_storage_settings))
        tables = IcebergTables(catalog.storage, catalog, backend_storage_settings)
        catalog.subscribe(tables.on_commit)
        replicas.append(catalog)
    replicas[0].commit("race", "create", LEGACY.schema, [_register(storage, "race", 0)])
    barrier = threading.Barrier(2)

    def append(index: int) -> None:
        barrier.wait()
        for round_ in range(3):
            number = 1 + index * 10 + round_
            replicas[index].commit("race", "append", LEGACY.schema,
                                   [_register(storage, "race", number)])

    threads = [threading.Thread(target=append, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert replicas[0].history("race")[-1] == 7
    assert_one_chain(storage, replicas[0], backend_storage_settings, "race")
    # The loser of a race removed the manifests it wrote: every Avro file is referenced.
    table = StaticTable.from_metadata(table_url(storage, "race"),
                                      file_io_properties(backend_storage_settings))
    referenced = {path for snapshot in table.snapshots()
                  for path in (snapshot.manifest_list,
                               *(m.manifest_path for m in snapshot.manifests(table.io)))}
    stored = {storage.url(o.key) for o in storage.list("_iceberg/lake/race/metadata")
              if o.key.endswith(".avro")}
    assert stored == referenced
