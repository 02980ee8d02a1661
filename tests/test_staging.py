"""Many files, one dataset: staged transactions through the real clients (issue 14).

The Python client (``ingest_csv`` with several paths) and HTTP (``/v1/transactions``)
stage files in parallel and commit once; one bad file commits nothing and leaves no
object behind; Parquet and Arrow IPC files are accepted as uploads.
"""

from __future__ import annotations

import concurrent.futures
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake import staging
from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from flight_lake_client import Conflict, InvalidInput, connect
from tests.support import make_settings, wait_until


def write_csvs(folder: Path, count: int, rows: int = 20) -> list[Path]:
    paths = []
    for number in range(count):
        path = folder / f"day_{number}.csv"
        path.write_text("id,city,amount\n" + "".join(
            f"{number * rows + row},c{row % 3},{row / 4}\n" for row in range(rows)))
        paths.append(path)
    return paths


def stored_keys(server: Server, name: str) -> list[str]:
    return [item.key for item in server.lake.storage.list(f"datasets/{name}")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("staging")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             ingest={"max_concurrent_ingests": 3, "max_open_transactions": 4})
    with Server(settings) as running:
        yield running


def test_many_files_commit_once_on_each_backend(
        backend_storage_settings: StorageSettings, tmp_path: Path) -> None:
    """Six files (CSV, Parquet, Arrow IPC) over two streams: one version, every row, the
    objects in file order; then one bad file among good ones commits nothing and leaves
    no object (local folder and moto S3)."""
    paths = write_csvs(tmp_path, 4)
    extra = pa.table({"id": pa.array([1000, 1001], pa.int64()), "city": ["p", "q"],
                      "amount": [0.5, 1.5]})
    pq.write_table(extra, tmp_path / "extra.parquet")
    with pa.OSFile(str(tmp_path / "extra.arrow"), "wb") as sink, \
            pa.ipc.new_file(sink, extra.schema) as writer:
        writer.write_table(extra)
    paths += [tmp_path / "extra.parquet", tmp_path / "extra.arrow"]
    settings = make_settings(backend_storage_settings, tmp_path)
    with Server(settings) as running, connect(running.flight_uri) as lake:
        seen: list[tuple[int, int | None]] = []
        manifest = lake.ingest_csv(paths, name="sales", max_streams=2,
                                   progress=lambda sent, total: seen.append((sent, total)))
        assert seen[-1] == (sum(p.stat().st_size for p in paths),) * 2  # every byte, once
        assert (manifest.version, manifest.row_count) == (1, 4 * 20 + 2 * 2)
        assert len(manifest.objects) == 6
        assert running.lake.catalog.history("sales") == [1]
        folders = {o.key.split("/")[2] for o in manifest.objects}
        assert len(folders) == 1  # one version folder, a sub-folder per file, in order
        assert [o.key.split("/")[3] for o in manifest.objects] == [
            f"file-{n:05d}" for n in range(6)]
        assert lake.sql("SELECT count(*) AS n, max(id) AS top FROM sales").to_pylist() == [
            {"n": 84, "top": 1001}]
        assert not [key for key in stored_keys(running, "sales") if key.endswith("_lease")]

        bad = tmp_path / "bad.csv"
        bad.write_text("id,city,amount\n1,a,2.5\n2,b,lots\n")
        with pytest.raises(Conflict) as caught:
            lake.ingest_csv([paths[0], paths[1], bad, paths[2]], name="sales",
                            mode="replace", max_streams=2)
        assert caught.value.extra["file"] == str(bad)
        assert caught.value.line == 3 and "'amount'" in caught.value.detail
        assert lake.manifest("sales").version == 1
        assert lake.sql("SELECT count(*) AS n FROM sales").to_pylist() == [{"n": 84}]
        with pytest.raises(Conflict):
            lake.ingest_csv([paths[0], bad], name="fresh")
        assert "fresh" not in {m.name for m in lake.datasets()}
        wait_until(lambda: stored_keys(running, "fresh") == [], 10, "no staged object")
        assert sorted(stored_keys(running, "sales")) == sorted(o.key for o in manifest.objects)


@pytest.mark.parametrize(("content", "line", "error"), [
    ("id,town,amount\n1,a,2\n", 1, Conflict),  # another header
    ("id,city,amount\n1,a,2\n2,b,3\n3,c,x\n", 4, Conflict),  # a value the types refuse
    ("id,city,amount\n1,a,2\n2,b\n", 3, InvalidInput),  # a short row
])
def test_a_mismatch_names_the_file_and_the_line(server: Server, tmp_path: Path, content: str,
                                                line: int, error: type) -> None:
    first, *_ = write_csvs(tmp_path, 1)
    odd = tmp_path / "odd.csv"
    odd.write_text(content)
    with connect(server.flight_uri) as lake, pytest.raises(error) as caught:
        lake.ingest_csv([first, odd], name="mismatch")
    assert caught.value.extra["file"] == str(odd) and caught.value.line == line
    assert f"file {odd}" in caught.value.detail
    assert "mismatch" not in {m.name for m in server.lake.catalog.list()}


def test_append_takes_the_dataset_columns_and_the_slots_bound_the_streams(
        tmp_path: Path) -> None:
    """Appending files checks each against the dataset; one client address uploads over
    no more streams than ``ingest.max_concurrent_ingests_per_client`` (never refused)."""
    settings = make_settings(
        StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
        ingest={"max_concurrent_ingests": 3, "max_concurrent_ingests_per_client": 1})
    paths = write_csvs(tmp_path, 4, rows=5)
    with Server(settings) as running, connect(running.flight_uri) as lake, \
            capture_logs() as events:
        assert lake.ingest_csv(paths[:1], name="days").row_count == 5
        appended = lake.ingest_csv(paths[1:], name="days", mode="append", max_streams=4)
        assert (appended.version, appended.row_count) == (2, 20)
        parquet = tmp_path / "wrong.parquet"
        pq.write_table(pa.table({"id": [1], "city": ["x"], "amount": ["text"]}), parquet)
        with pytest.raises(Conflict, match="column 'amount' is string here, not double"):
            lake.ingest_csv([paths[0], parquet], name="days", mode="append")
        assert running.lake.catalog.get("days").version == 2
    refused = [e for e in events if e.get("event") == "flight_request"
               and e.get("outcome") == "busy"]
    assert refused == []


def test_parquet_is_stored_as_it_is_and_ipc_is_converted(server: Server,
                                                         tmp_path: Path) -> None:
    table = pa.table({"k": pa.array([3, 1, 2], pa.int32()), "v": ["c", "a", "b"]})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", row_group_size=2)
    parquet = sink.getvalue()
    answer = httpx.post(f"{server.http_uri}/v1/ingest", params={"name": "as_is"},
                        content=parquet, headers={"Content-Type": "application/octet-stream"},
                        timeout=30)
    assert answer.status_code == 200, answer.text
    (stored,) = answer.json()["objects"]
    assert server.lake.storage.get(stored["key"]) == parquet  # not rewritten
    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    with connect(server.flight_uri) as lake:
        converted = lake.ingest_csv(stream.getvalue(), name="from_ipc")
        assert converted.row_count == 3
        assert lake.sql("SELECT sum(k) AS s FROM from_ipc").to_pylist() == [{"s": 6}]
        assert lake.sql("SELECT v FROM as_is ORDER BY k").column("v").to_pylist() == [
            "a", "b", "c"]
        with pytest.raises(InvalidInput, match="Parquet") as caught:
            lake.ingest_csv(parquet[:-40], name="cut_parquet")
        assert caught.value.extra["format"] == "parquet"


def test_http_transaction_stages_in_parallel_and_commits_once(server: Server,
                                                              tmp_path: Path) -> None:
    base = f"{server.http_uri}/v1"
    paths = write_csvs(tmp_path, 3)
    with httpx.Client(base_url=base, timeout=30) as http:
        opened = http.post("/transactions", json={"name": "via_http"}).json()
        transaction = opened["transaction"]
        assert opened["idle_expiry_seconds"] == server.lake.settings.ingest.staging_seconds

        def stage(path: Path) -> httpx.Response:
            return http.post("/ingest", params={"transaction": transaction, "file": path.name},
                             content=path.read_bytes(), headers={"Content-Type": "text/csv"})

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            staged = list(pool.map(stage, paths))
        assert [r.status_code for r in staged] == [200, 200, 200], [r.text for r in staged]
        assert sorted(r.json()["file"] for r in staged) == [p.name for p in paths]
        assert "via_http" not in {m.name for m in server.lake.catalog.list()}  # not yet
        wrong = http.post(f"/transactions/{transaction}/commit", params={"files": 4})
        assert wrong.status_code == 400 and "holds 3 staged file(s)" in wrong.json()["detail"]
        committed = http.post(f"/transactions/{transaction}/commit", params={"files": 3})
        assert committed.status_code == 200, committed.text
        assert (committed.json()["version"], committed.json()["row_count"]) == (1, 60)
        again = http.post(f"/transactions/{transaction}/commit")
        assert again.status_code == 404 and again.json()["error"] == "not_found"

        dropped = http.post("/transactions", json={"name": "dropped"}).json()["transaction"]
        assert stage_into(http, dropped, paths[0]).status_code == 200
        assert http.delete(f"/transactions/{dropped}").json() == {"aborted": dropped}
        assert stage_into(http, dropped, paths[1]).status_code == 404
        assert stored_keys(server, "dropped") == []
        unknown = http.post("/transactions", json={"name": "x", "mode": "append"})
        assert unknown.status_code == 404


def stage_into(http: httpx.Client, transaction: str, path: Path) -> httpx.Response:
    return http.post("/ingest", params={"transaction": transaction, "file": path.name},
                     content=path.read_bytes(), headers={"Content-Type": "text/csv"})


def test_open_transactions_are_bounded_and_expire_when_idle(tmp_path: Path) -> None:
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             ingest={"staging_seconds": 0.5, "max_open_transactions": 1})
    paths = write_csvs(tmp_path, 1)
    with Server(settings) as running, httpx.Client(base_url=f"{running.http_uri}/v1",
                                                   timeout=30) as http:
        transaction = http.post("/transactions", json={"name": "idle"}).json()["transaction"]
        full = http.post("/transactions", json={"name": "other"})
        assert full.status_code == 503 and full.json()["error"] == "busy"
        assert stage_into(http, transaction, paths[0]).status_code == 200
        assert stored_keys(running, "idle")
        wait_until(lambda: httpx.get(f"{running.http_uri}/health").json()[
            "transactions_open"] == 0, 10, "the idle transaction's expiry")
        assert http.post(f"/transactions/{transaction}/commit").status_code == 404
        assert stored_keys(running, "idle") == []
        assert http.post("/transactions", json={"name": "other"}).status_code == 200


def test_a_transaction_writes_every_file_in_its_layout(server: Server, tmp_path: Path) -> None:
    """Files staged with partition_by land in column=value folders (a Parquet file is then
    rewritten), the manifest records the layout, and a filter on the column prunes."""
    paths = write_csvs(tmp_path, 2)
    parquet = tmp_path / "more.parquet"
    pq.write_table(pa.table({"id": pa.array([500], pa.int64()), "city": ["c1"],
                             "amount": [9.0]}), parquet)
    with connect(server.flight_uri) as lake:
        manifest = lake.ingest_csv([*paths, parquet], name="by_city", partition_by="city")
        assert manifest.row_count == 41 and manifest.version == 1
        assert all("/city=" in o.key for o in manifest.objects)
        assert server.lake.catalog.get("by_city").layout.partition_by == ["city"]
        assert lake.sql("SELECT count(*) AS n FROM by_city WHERE city = 'c1'").to_pylist() == [
            {"n": 15}]
        appended = lake.ingest_csv(paths[:1], name="by_city", mode="append")
        assert all("/city=" in o.key for o in appended.objects)


def test_a_transaction_takes_a_bounded_number_of_files(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "MAX_FILES", 2)
    paths = write_csvs(tmp_path, 3, rows=2)
    with httpx.Client(base_url=f"{server.http_uri}/v1", timeout=30) as http:
        transaction = http.post("/transactions", json={"name": "few"}).json()["transaction"]
        assert [stage_into(http, transaction, p).status_code for p in paths] == [200, 200, 413]
        assert http.post(f"/transactions/{transaction}/commit").json()["row_count"] == 4
