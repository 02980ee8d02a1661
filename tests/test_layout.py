"""Layouts: partitioned and sorted ingest (folder and moto S3), what the manifest records,
append keeping the layout, refusals that leave nothing behind, the view's Hive pruning, and
the options on every front end (Flight command, HTTP, client, CLI)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

import flight_lake_client
from flight_lake.catalog import Catalog, Manifest
from flight_lake.cli import app
from flight_lake.errors import Conflict, InvalidInput, TooManyPartitions
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2
from flight_lake.flightsql.wire import pack
from flight_lake.ingest import IngestService
from flight_lake.layout import Layout, check_layout, folder, layout_of
from flight_lake.layout_writer import LayoutWriter
from flight_lake.query import QueryEngine
from flight_lake.serve import Server
from flight_lake.settings import Settings, StorageSettings
from flight_lake.storage import Storage
from tests.support import make_settings

STATES = ["IL", "NY", "N/A", "New York", ""]  # "" is a null: its own partition
ROWS = 400


def workers_csv(rows: int = ROWS, start: int = 0) -> bytes:
    """Rows in descending id order, so a sorted layout has work to do."""
    lines = ["id,state,rate,day"]
    for i in range(start + rows, start, -1):
        lines.append(f"{i},{STATES[i % len(STATES)]},{i * 0.5},2024-01-{1 + i % 28:02d}")
    return ("\n".join(lines) + "\n").encode()


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage.from_settings(settings.storage)
        self.catalog = Catalog(self.storage)
        self.ingest = IngestService(self.storage, self.catalog, settings)

    def keys(self) -> list[str]:
        return sorted(info.key for info in self.storage.list("datasets"))

    def read(self, manifest: Manifest) -> pa.Table:
        tables = []
        for data_object in manifest.objects:
            with self.storage.open_read(data_object.key) as handle:
                tables.append(pq.read_table(handle))
        return pa.concat_tables(tables)

    def view(self, manifest: Manifest) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the dataset's view, as the query engine makes it."""
        database = duckdb.connect(":memory:")
        self.storage.configure_duckdb(database)
        urls = [self.storage.url(o.key) for o in manifest.objects]
        database.execute(QueryEngine._view_sql(manifest, urls))
        return database


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    storage_settings = (StorageSettings(uri=str(tmp_path / "lake")) if request.param == "local"
                        else request.getfixturevalue("s3_storage_settings"))
    return Lake(make_settings(storage_settings, tmp_path,
                              ingest={"rows_per_part": 150, "row_group_rows": 50,
                                      "max_partitions": 5}))


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    return Lake(make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                              ingest={"rows_per_part": 150, "row_group_rows": 50,
                                      "max_partitions": 5}))


def staging_left(settings: Settings) -> list[Path]:
    return list(Path(str(settings.ingest.spool_dir)).glob("flight-lake-*"))


# -- the layout itself -------------------------------------------------------------------


def test_layout_options_are_read_from_lists_or_commas() -> None:
    assert layout_of(None, None) is None
    assert layout_of("state, day", ["id"]) == Layout(partition_by=["state", "day"],
                                                    sort_by=["id"])
    assert layout_of([], None) == Layout()
    with pytest.raises(InvalidInput, match="partition_by"):
        layout_of(["a", "b", "c", "d", "e"], None)


def test_folders_are_what_duckdb_reads_back() -> None:
    assert folder(["state", "day"], ("New York/N", datetime.date(2024, 1, 2))) == \
        "state=New%20York%2FN/day=2024-01-02"
    assert folder(["flag"], (None,)) == "flag=__HIVE_DEFAULT_PARTITION__"
    assert folder(["flag"], (True,)) == "flag=true"


def test_partition_columns_must_exist_and_carry_a_folder() -> None:
    schema = pa.schema([("id", pa.int64()), ("rate", pa.float64()), ("odd name", pa.string())])
    check_layout(Layout(partition_by=["id"], sort_by=["rate", "odd name"]), schema)
    for layout, message in [(Layout(partition_by=["nope"]), "not a column"),
                            (Layout(sort_by=["id", "id"]), "twice"),
                            (Layout(partition_by=["rate"]), "double"),
                            (Layout(partition_by=["odd name"]), "letters, digits")]:
        with pytest.raises(InvalidInput, match=message):
            check_layout(layout, schema)


# -- ingest, on both backends -----------------------------------------------------------


def test_partitioned_and_sorted_ingest(lake: Lake) -> None:
    layout = Layout(partition_by=["state"], sort_by=["id"])
    manifest = lake.ingest.ingest_csv("workers", "create", [workers_csv()], layout=layout)
    assert manifest.layout == layout
    assert manifest.to_json_dict()["layout"] == {"partition_by": ["state"], "sort_by": ["id"]}
    assert lake.catalog.get("workers").layout == layout  # recorded in the stored manifest
    assert Catalog(lake.storage).get("workers").layout == layout
    folders = {o.key.split("/")[3] for o in manifest.objects}
    assert folders == {"state=IL", "state=NY", "state=N%2FA", "state=New%20York",
                       "state=__HIVE_DEFAULT_PARTITION__"}
    for data_object in manifest.objects:  # each object holds its partition only, sorted
        with lake.storage.open_read(data_object.key) as handle:
            part = pq.read_table(handle)
        states = set(part.column("state").to_pylist())
        assert len(states) == 1
        ids = part.column("id").to_pylist()
        assert ids == sorted(ids)
    stored = lake.read(manifest)
    assert stored.num_rows == ROWS
    assert sorted(stored.column("id").to_pylist()) == list(range(1, ROWS + 1))
    view = lake.view(manifest)
    assert view.sql("SELECT * FROM workers").arrow().read_all().schema.equals(
        manifest.arrow_schema())  # the hive columns keep their stored types
    counts = dict(view.sql("SELECT state, count(*) FROM workers GROUP BY state").fetchall())
    assert counts == {"IL": 80, "NY": 80, "N/A": 80, "New York": 80, None: 80}
    plan = view.sql("EXPLAIN ANALYZE SELECT count(*) FROM workers WHERE state = 'NY'"
                    ).fetchall()[0][1]
    assert "Scanning Files: 1/5" in plan  # the other partitions' folders are never opened
    assert not staging_left(lake.settings)


def test_sorted_objects_and_row_groups_cover_narrow_ranges(lake: Lake) -> None:
    manifest = lake.ingest.ingest_csv("sorted", "create", [workers_csv()],
                                      layout=Layout(sort_by=["id"]))
    assert [o.row_count for o in manifest.objects] == [150, 150, 100]
    bounds = []
    for data_object in manifest.objects:
        with lake.storage.open_read(data_object.key) as handle:
            metadata = pq.ParquetFile(handle).metadata
        for group in range(metadata.num_row_groups):
            statistics = metadata.row_group(group).column(0).statistics
            bounds.append((statistics.min, statistics.max))
    assert bounds == [(first, first + 49) for first in range(1, ROWS + 1, 50)]


def test_append_keeps_the_layout_and_refuses_another(lake: Lake) -> None:
    layout = Layout(partition_by=["state"], sort_by=["id"])
    lake.ingest.ingest_csv("workers", "create", [workers_csv(50)], layout=layout)
    appended = lake.ingest.ingest_csv("workers", "append", [workers_csv(50, start=50)])
    assert appended.layout == layout and appended.version == 2
    assert all("/state=" in o.key for o in appended.objects)
    assert len(appended.objects) == 10
    again = lake.ingest.ingest_csv("workers", "append", [workers_csv(5, start=100)],
                                   layout=layout)
    assert again.version == 3
    before = lake.keys()
    with pytest.raises(Conflict, match="layout"):
        lake.ingest.ingest_csv("workers", "append", [workers_csv(5, start=200)],
                               layout=Layout(sort_by=["id"]))
    with pytest.raises(Conflict, match="layout"):
        lake.catalog.register("workers", [appended.objects[0].key], mode="append")
    assert lake.keys() == before and lake.catalog.get("workers").version == 3
    view = lake.view(lake.catalog.get("workers"))
    assert view.sql("SELECT count(*), count(DISTINCT id) FROM workers").fetchone() == (105, 105)


def test_replace_may_change_the_layout_and_content_alone_is_not_the_same(
        local_lake: Lake) -> None:
    csv = workers_csv(30)
    first = local_lake.ingest.ingest_csv("workers", "create", [csv],
                                         layout=Layout(partition_by=["state"]))
    sorted_ = local_lake.ingest.ingest_csv("workers", "replace", [csv],
                                           layout=Layout(sort_by=["rate"]))
    assert not sorted_.unchanged and sorted_.version == first.version + 1
    assert sorted_.layout == Layout(sort_by=["rate"])
    flat = local_lake.ingest.ingest_csv("workers", "replace", [csv])
    assert flat.layout == Layout() and flat.version == sorted_.version + 1
    assert not any("state=" in o.key for o in flat.objects)
    assert local_lake.ingest.ingest_csv("workers", "replace", [csv]).unchanged


def test_refusals_commit_nothing_and_leave_nothing(lake: Lake) -> None:
    with pytest.raises(InvalidInput, match="'region' is not a column"):
        lake.ingest.ingest_csv("workers", "create", [workers_csv(20)],
                               layout=Layout(partition_by=["region"]))
    with pytest.raises(InvalidInput, match="double"):
        lake.ingest.ingest_csv("workers", "create", [workers_csv(20)],
                               layout=Layout(partition_by=["rate"]))
    with pytest.raises(TooManyPartitions, match=r"ingest\.max_partitions") as refused:
        lake.ingest.ingest_csv("workers", "create", [workers_csv()],
                               layout=Layout(partition_by=["day"], sort_by=["id"]))
    assert refused.value.code == "too_many_partitions"
    assert lake.catalog.list() == []
    assert lake.keys() == []
    assert not staging_left(lake.settings)


def test_arrow_uploads_partition_by_integers_dates_and_booleans(local_lake: Lake) -> None:
    table = pa.table({"n": pa.array([3, 1, 2, 1], pa.int32()),
                      "day": [datetime.date(2024, 1, 2), None, datetime.date(2024, 1, 2),
                              datetime.date(2024, 1, 3)],
                      "ok": [True, False, None, True], "label": ["c", "a", "b", "a"]})
    layout = Layout(partition_by=["n", "day"], sort_by=["label"])
    manifest = local_lake.ingest.ingest_arrow("typed", "create", table.schema,
                                              table.to_batches(max_chunksize=1), layout=layout)
    assert manifest.arrow_schema().equals(table.schema)
    assert {o.key.split("/", 3)[3].rsplit("/", 1)[0] for o in manifest.objects} == {
        "n=1/day=__HIVE_DEFAULT_PARTITION__", "n=1/day=2024-01-03", "n=2/day=2024-01-02",
        "n=3/day=2024-01-02"}
    view = local_lake.view(manifest)
    assert view.sql("SELECT * FROM typed").arrow().read_all().schema.equals(table.schema)
    assert view.sql("SELECT label FROM typed WHERE n = 1 ORDER BY label").fetchall() == [
        ("a",), ("a",)]
    empty = local_lake.ingest.ingest_arrow("none", "create", table.schema, [],
                                           layout=Layout(partition_by=["ok"]))
    assert empty.row_count == 0 and len(empty.objects) == 1
    assert local_lake.view(empty).sql("SELECT count(*) FROM none").fetchone() == (0,)


def test_spilled_and_externally_sorted_partitions_match_the_in_memory_ones(
        local_lake: Lake) -> None:
    """Budgets of a few KB: pieces spill to files, large partitions are sorted by DuckDB
    (from Parquet), small ones by Arrow; every way gives the same sorted partitions."""
    rows = 3_000
    table = pa.table({"id": pa.array([(i * 7919) % rows for i in range(rows)], pa.int64()),
                      "state": [STATES[i % 4] if i % 10 else None for i in range(rows)],
                      "note": [f"n{i % 13}" for i in range(rows)]})
    written: dict[str, list[pa.Table]] = {}
    for budget in ("memory", "spilled", "external"):
        for layout in (Layout(partition_by=["state"], sort_by=["note", "id"]),
                       Layout(sort_by=["note", "id"]), Layout(partition_by=["state"])):
            writer = LayoutWriter(local_lake.storage, f"datasets/t/{budget}{len(written)}",
                                  table.schema, local_lake.settings.ingest, layout,
                                  **{"memory": {}, "spilled": {"buffer_bytes": 2_000},
                                     "external": {"buffer_bytes": 2_000,
                                                  "sort_bytes": 4_000}}[budget])
            for batch in table.to_batches(max_chunksize=250):
                writer.write(batch)
            objects = writer.close()
            assert sum(o.row_count for o in objects) == rows
            parts = []
            for data_object in objects:
                with local_lake.storage.open_read(data_object.key) as handle:
                    part = pq.read_table(handle)
                if layout.partition_by:
                    assert len(set(part.column("state").to_pylist())) == 1
                if layout.sort_by:
                    keys = list(zip(part.column("note").to_pylist(),
                                    part.column("id").to_pylist(), strict=True))
                    assert keys == sorted(keys)
                parts.append(part)
            written.setdefault(layout.describe(), []).append(pa.concat_tables(parts))
    assert not staging_left(local_lake.settings)
    for layout_name, tables in written.items():
        first = tables[0].sort_by([("state", "ascending"), ("id", "ascending")])
        for other in tables[1:]:
            assert other.sort_by([("state", "ascending"), ("id", "ascending")]).equals(first), \
                layout_name
        if "sort_by" in layout_name and "partition_by=[]" not in layout_name:
            assert [t.column("id").to_pylist() for t in tables[1:]] == \
                [tables[0].column("id").to_pylist()] * 2  # the same order every way


def test_too_many_partitions_is_refused_across_spills(local_lake: Lake) -> None:
    table = pa.table({"day": pa.array([i % 7 for i in range(700)], pa.int32())})
    writer = LayoutWriter(local_lake.storage, "datasets/t/v", table.schema,
                          local_lake.settings.ingest, Layout(partition_by=["day"]),
                          buffer_bytes=100)
    with pytest.raises(TooManyPartitions):
        for batch in table.to_batches(max_chunksize=1):
            writer.write(batch)
    writer.abort()
    assert not staging_left(local_lake.settings)
    assert local_lake.keys() == []


# -- the front ends ----------------------------------------------------------------------


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    return serve(ingest={"max_partitions": 3})


@pytest.fixture
def lake_client(server: Server) -> Iterator[flight_lake_client.FlightLakeClient]:
    with flight_lake_client.connect(server.flight_uri) as client:
        yield client


def test_flight_client_takes_the_options(server: Server,
                                         lake_client: flight_lake_client.FlightLakeClient,
                                         ) -> None:
    manifest = lake_client.ingest_csv(b"id,state\n2,IL\n1,NY\n3,IL\n", name="people",
                                      partition_by="state", sort_by=["id"])
    assert manifest.partition_by == ("state",) and manifest.sort_by == ("id",)
    appended = lake_client.ingest(pa.table({"id": [4], "state": ["NY"]}), name="people",
                                  mode="append")
    assert appended.partition_by == ("state",) and appended.row_count == 4
    assert lake_client.sql("SELECT id FROM people WHERE state = 'IL' ORDER BY id"
                           ).column("id").to_pylist() == [2, 3]
    with pytest.raises(flight_lake_client.TooManyPartitions):
        lake_client.ingest_csv(b"id,state\n1,a\n2,b\n3,c\n4,d\n", name="many",
                               partition_by="state")
    with pytest.raises(flight_lake_client.Conflict):
        lake_client.ingest_csv(b"id,state\n5,IL\n", name="people", mode="append",
                               partition_by="id")
    assert [m.name for m in lake_client.datasets()] == ["people"]


def test_http_takes_the_options(server: Server) -> None:
    with httpx.Client(base_url=server.http_uri, timeout=60) as client:
        answer = client.post("/v1/ingest", params=[("name", "people"), ("partition_by", "state"),
                                                   ("sort_by", "id,name")],
                             content=b"id,name,state\n2,b,IL\n1,a,NY\n",
                             headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["layout"] == {"partition_by": ["state"], "sort_by": ["id", "name"]}
        refused = client.post("/v1/ingest", params={"name": "many", "partition_by": "state"},
                              content=b"id,state\n1,a\n2,b\n3,c\n4,d\n")
        assert refused.status_code == 413
        assert refused.json()["error"] == "too_many_partitions"
        bad = client.post("/v1/ingest", params={"name": "bad", "sort_by": "nope"},
                          content=b"id,state\n1,a\n")
        assert bad.status_code == 400 and "'nope' is not a column" in bad.json()["detail"]
        document = client.get("/openapi.json").json()
        parameters = {p["name"] for p in document["paths"]["/v1/ingest"]["post"]["parameters"]}
        assert {"partition_by", "sort_by"} <= parameters
        assert client.get("/v1/catalog").json()[0]["name"] == "people"


def test_cli_takes_the_options(server: Server, tmp_path: Path) -> None:
    with capture_logs():  # the in-process server logs to the stdout CliRunner captures
        _cli_takes_the_options(server, tmp_path)


def _cli_takes_the_options(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "people.csv"
    data.write_bytes(b"id,state\n2,IL\n1,NY\n")
    runner = CliRunner(env={"FLIGHT_LAKE_SERVER": server.flight_uri})
    result = runner.invoke(app, ["ingest", str(data), "--name", "people", "--partition-by",
                                 "state", "--sort-by", "id", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layout"] == {"partition_by": ["state"],
                                                   "sort_by": ["id"]}
    summary = runner.invoke(app, ["ingest", str(data), "--name", "people", "--mode", "append"])
    assert "partitioned by state, sorted by id" in summary.stdout
    data.write_bytes(b"id,state\n1,a\n2,b\n3,c\n4,d\n")
    refused = runner.invoke(app, ["ingest", str(data), "--name", "many",
                                  "--partition-by", "state"])
    assert refused.exit_code == 6 and "too_many_partitions" in refused.stderr


def test_flight_sql_bulk_ingest_takes_the_options(server: Server) -> None:
    """ADBC drivers send no options of their own; the command's options map carries them."""
    options = sql_pb2.CommandStatementIngest.TableDefinitionOptions
    command = sql_pb2.CommandStatementIngest(
        table="people", options={"partition_by": "state", "sort_by": "id"},
        table_definition_options=options(
            if_not_exist=options.TABLE_NOT_EXIST_OPTION_CREATE,
            if_exists=options.TABLE_EXISTS_OPTION_FAIL))
    table = pa.table({"id": [2, 1, 3], "state": ["IL", "NY", "IL"]})
    with flight.connect(server.flight_uri) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(pack(command)),
                                  table.schema)
        writer.write_table(table)
        writer.done_writing()
        writer.close()
    manifest = server.lake.catalog.get("people")
    assert manifest.layout == Layout(partition_by=["state"], sort_by=["id"])
    assert len(manifest.objects) == 2


def test_start_up_collects_staging_folders_of_crashed_ingests_only(local_lake: Lake) -> None:
    spool = Path(str(local_lake.settings.ingest.spool_dir))
    crashed = spool / "flight-lake-layout-crashed"
    (crashed / "staged").mkdir(parents=True)
    (crashed / "staged" / "part-0.parquet").write_bytes(b"left behind")
    live = LayoutWriter(local_lake.storage, "datasets/x/v", pa.schema([("a", pa.int64())]),
                        local_lake.settings.ingest, Layout(sort_by=["a"]))
    try:
        removed = local_lake.ingest.collect_spool()
        assert removed == [str(crashed)] and not crashed.exists()
        assert len(staging_left(local_lake.settings)) == 1  # the live writer's
    finally:
        live.abort()
    assert not staging_left(local_lake.settings)
