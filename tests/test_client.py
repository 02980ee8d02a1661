"""flight_lake_client against a live server: every method, every error kind, pandas and polars."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from flight_lake_client import FlightLakeClient, Manifest, connect
from flight_lake_client import errors as lake_errors
from tests.support import PEOPLE_CSV, REPO, hold_ingest_slot

Serve = Callable[..., Server]


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """Flight only: nothing in this module speaks HTTP, whose stop costs ~0.2 s a server."""
    return serve(http={"enabled": False})


@pytest.fixture
def lake(server: Server) -> Iterator[FlightLakeClient]:
    with connect(server.flight_uri) as client:
        yield client


@contextlib.contextmanager
def limited_lake(serve: Serve, **sections: dict) -> Iterator[FlightLakeClient]:
    """A client of a server with some settings changed (limits, batch sizes…)."""
    with connect(serve(**sections).flight_uri) as client:
        yield client


# -- ingest --------------------------------------------------------------------------


def test_ingest_csv_from_path_streams_chunks_and_reports_progress(
        lake: FlightLakeClient, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE_CSV)
    calls: list[tuple[int, int | None]] = []

    manifest = lake.ingest_csv(path, name="people", chunk_size=40,
                               progress=lambda sent, total: calls.append((sent, total)))

    assert isinstance(manifest, Manifest)
    assert (manifest.name, manifest.version, manifest.row_count) == ("people", 1, 4)
    assert [(c.name, c.type) for c in manifest.columns] == [
        ("id", "int64"), ("name", "string"), ("city", "string"), ("born", "date32[day]"),
        ("score", "double"), ("active", "bool")]
    assert sum(o.row_count for o in manifest.objects) == 4
    assert manifest.objects[0].key.startswith("datasets/people/")
    assert manifest.to_dict()["schema"][0] == {"name": "id", "type": "int64", "nullable": True}
    assert manifest.to_dict()["row_count"] == 4
    # 40-byte chunks of the file: one progress call each, ending at the whole size.
    assert len(calls) == -(-len(PEOPLE_CSV) // 40)
    assert [sent for sent, _ in calls] == sorted(sent for sent, _ in calls)
    assert calls[-1] == (len(PEOPLE_CSV), len(PEOPLE_CSV))
    assert lake.sql("SELECT sum(id) AS s FROM people").to_pylist() == [{"s": 10}]


def test_ingest_csv_from_bytes_binary_and_text_files_with_each_mode(
        lake: FlightLakeClient) -> None:
    first = lake.ingest_csv(PEOPLE_CSV, name="people")
    totals: list[int | None] = []
    appended = lake.ingest_csv(io.BytesIO(PEOPLE_CSV), name="people", mode="append",
                               progress=lambda sent, total: totals.append(total))
    assert totals == [len(PEOPLE_CSV)]
    assert (appended.version, appended.row_count, appended.dataset_id) == (
        2, 8, first.dataset_id)

    replaced = lake.ingest_csv(io.StringIO("id,name\n7,Émile\n"), name="people", mode="replace",
                               progress=lambda sent, total: totals.append(total))
    assert totals[-1] is None  # a text file's size in bytes is not known up front
    assert (replaced.version, replaced.row_count) == (3, 1)
    assert lake.sql("SELECT name FROM people").to_pylist() == [{"name": "Émile"}]


def test_ingest_arrow_table_reader_and_batch(lake: FlightLakeClient) -> None:
    table = pa.table({"id": list(range(10)), "tag": [f"t{i}" for i in range(10)]})
    assert lake.ingest(table, name="tags").row_count == 10
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3))
    sent: list[int] = []
    manifest = lake.ingest(reader, name="tags", mode="append",
                           progress=lambda n, total: sent.append(n))
    assert manifest.row_count == 20
    assert len(sent) == 4 and sent[-1] > 0
    assert lake.ingest(table.to_batches()[0], name="tags", mode="append").row_count == 30
    assert lake.sql("SELECT count(DISTINCT id) AS n FROM tags").to_pylist() == [{"n": 10}]
    with pytest.raises(TypeError, match="pandas or polars"):
        lake.ingest([{"id": 1}], name="tags")


# -- query ---------------------------------------------------------------------------


def test_sql_reader_streams_batch_by_batch(serve: Serve) -> None:
    with limited_lake(serve, query={"batch_rows": 1000}) as lake:
        lake.ingest(pa.table({"n": list(range(5000))}), name="numbers")
        reader = lake.sql_reader("SELECT n FROM numbers ORDER BY n")
        assert isinstance(reader, pa.RecordBatchReader)
        assert reader.schema.names == ["n"]
        sizes, total = [], 0
        for batch in reader:
            sizes.append(batch.num_rows)
            total += pa.compute.sum(batch.column(0)).as_py()
        assert len(sizes) >= 5 and sum(sizes) == 5000
        assert total == sum(range(5000))


def test_sql_returns_a_typed_table(lake: FlightLakeClient) -> None:
    lake.ingest_csv(PEOPLE_CSV, name="people")
    table = lake.sql("SELECT city, count(*) AS n FROM people GROUP BY city ORDER BY n DESC, city")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"city": "New York", "n": 2}, {"city": "Helsinki", "n": 1},
                                 {"city": "London", "n": 1}]
    empty = lake.sql("SELECT id FROM people WHERE id < 0")
    assert (empty.num_rows, empty.schema.names) == (0, ["id"])


def test_read_dataset_fetches_every_object(serve: Serve) -> None:
    with limited_lake(serve, ingest={"rows_per_part": 100}) as lake:
        table = pa.table({"id": list(range(1000)), "half": [i / 2 for i in range(1000)]})
        manifest = lake.ingest(table, name="parts")
        assert len(manifest.objects) == 10
        fetched = lake.read_dataset("parts", max_workers=4)
        assert fetched.sort_by("id").equals(table)
        with pytest.raises(lake_errors.NotFound):
            lake.read_dataset("nobody")


def test_datasets_manifest_health_and_register(lake: FlightLakeClient) -> None:
    assert lake.datasets() == []
    health = lake.health()
    assert (health["status"], health["service"], health["datasets"]) == ("ok", "flight_lake", 0)
    people = lake.ingest_csv(PEOPLE_CSV, name="people")
    lake.ingest(pa.table({"x": [1]}), name="another")
    assert [m.name for m in lake.datasets()] == ["another", "people"]
    manifest = lake.manifest("people")
    assert manifest == people  # same fields (``raw`` is not compared)
    assert manifest.created_at.tzinfo is not None
    registered = lake.register("people", [o.key for o in people.objects], mode="replace")
    assert (registered.version, registered.row_count) == (2, 4)
    assert lake.health()["datasets"] == 2


def test_the_same_calls_work_on_both_storage_backends(
        serve: Serve, backend_storage_settings: StorageSettings) -> None:
    """The backend is the server's business: local folder and S3 look the same to a client.

    The client's smoke test on each backend: the other client tests run on local storage.
    """
    with connect(serve(storage=backend_storage_settings).flight_uri) as lake:
        manifest = lake.ingest_csv(PEOPLE_CSV, name="people", chunk_size=64)
        assert manifest.row_count == 4
        assert lake.sql("SELECT count(*) AS n FROM people WHERE active").to_pylist() == [
            {"n": 2}]
        assert lake.read_dataset("people").num_rows == 4
        backend = "s3" if backend_storage_settings.uri.startswith("s3://") else "local"
        assert lake.health()["storage"]["backend"] == backend


# -- errors --------------------------------------------------------------------------


def _error_tree(module: object) -> dict[str, tuple[str, str]]:
    """code -> (class name, parent's name) of every error class ``module`` defines."""
    base = module.LakeError  # type: ignore[attr-defined]
    classes = [value for value in vars(module).values()
               if isinstance(value, type) and issubclass(value, base)]
    by_code = module.ERRORS_BY_CODE  # type: ignore[attr-defined]
    assert {cls.code: cls for cls in classes} == by_code, f"{module}: a class not in the table"
    return {code: (cls.__name__, cls.__mro__[1].__name__) for code, cls in by_code.items()}


def test_the_client_knows_every_code_the_server_sends() -> None:
    from flight_lake import errors as server_errors

    assert _error_tree(lake_errors) == _error_tree(server_errors)
    for code, cls in lake_errors.ERRORS_BY_CODE.items():
        body = json.dumps({"error": code, "detail": "why", "retry_after": 1}).encode()
        raised = lake_errors.from_flight_error(flight.FlightServerError("why", body))
        assert type(raised) is cls and raised.detail == "why"


def test_not_found(lake: FlightLakeClient) -> None:
    with pytest.raises(lake_errors.NotFound) as caught:
        lake.manifest("nobody")
    assert caught.value.detail == "unknown dataset: nobody"
    assert caught.value.to_dict() == {"error": "not_found", "detail": "unknown dataset: nobody"}
    with pytest.raises(lake_errors.NotFound):
        lake.sql("SELECT * FROM nobody")
    with pytest.raises(lake_errors.NotFound):
        lake.ingest_csv(PEOPLE_CSV, name="nobody", mode="append")


def test_invalid_input_names_the_csv_line(lake: FlightLakeClient) -> None:
    with pytest.raises(lake_errors.InvalidInput) as caught:
        lake.ingest_csv(b"a,b\n1,2\n3,4\n5,6,7\n", name="broken")
    assert caught.value.line == 4
    assert "line 4" in str(caught.value)
    assert isinstance(caught.value, lake_errors.LakeError)
    with pytest.raises(lake_errors.InvalidInput, match="invalid dataset name"):
        lake.ingest_csv(PEOPLE_CSV, name="Not A Name")
    with pytest.raises(lake_errors.InvalidInput):
        lake.sql("SELECT FROM WHERE")
    assert lake.datasets() == []


def test_conflict(lake: FlightLakeClient) -> None:
    lake.ingest_csv(PEOPLE_CSV, name="people")
    with pytest.raises(lake_errors.Conflict, match="another schema"):
        lake.ingest(pa.table({"other": [1]}), name="people")
    with pytest.raises(lake_errors.Conflict):
        lake.ingest(pa.table({"other": [1]}), name="people", mode="append")
    assert lake.manifest("people").version == 1


def test_too_large(serve: Serve) -> None:
    with limited_lake(serve, ingest={"max_upload_bytes": 4096}) as lake:
        big = b"id,text\n" + b"".join(b"%d,%s\n" % (i, b"x" * 60) for i in range(5000))
        with pytest.raises(lake_errors.TooLarge, match="max_upload_bytes"):
            lake.ingest_csv(big, name="big", chunk_size=1024)
        assert lake.datasets() == []
        assert lake.ingest_csv(PEOPLE_CSV, name="small").row_count == 4


def test_busy(serve: Serve) -> None:
    with limited_lake(serve, ingest={"max_concurrent_ingests": 1}) as lake:
        held, thread, results = hold_ingest_slot(lake, "slow")
        with pytest.raises(lake_errors.Busy) as caught:
            lake.ingest_csv(PEOPLE_CSV, name="people")
        assert caught.value.retry_after == 5
        held.release.set()
        thread.join(10)
        assert results and results[0].row_count == 1
        assert lake.ingest_csv(PEOPLE_CSV, name="people").row_count == 4


def test_permission_denied_for_writes_and_files(lake: FlightLakeClient) -> None:
    lake.ingest_csv(PEOPLE_CSV, name="people")
    for statement in ("DELETE FROM people", "CREATE TABLE t AS SELECT 1",
                      "COPY people TO 'out.csv'", "SELECT * FROM read_csv('/etc/passwd')"):
        with pytest.raises(lake_errors.PermissionDenied):
            lake.sql(statement)
    assert lake.manifest("people").row_count == 4


def test_query_timeout(serve: Serve) -> None:
    with limited_lake(serve, query={"timeout_seconds": 0.3}) as lake:
        with pytest.raises(lake_errors.QueryTimeout):
            lake.sql("SELECT sum(i) FROM range(100000000000) t(i)")
        assert lake.health()["status"] == "ok"


def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with connect("grpc://127.0.0.1:9", timeout=5) as lake, \
            pytest.raises(lake_errors.Unavailable, match=re.escape("cannot reach grpc://127.0.0.1:9:")):
        lake.health()


def test_errors_are_rebuilt_from_extra_info_alone() -> None:
    import pyarrow.flight as flight

    body = json.dumps({"error": "busy", "detail": "full", "retry_after": 7}).encode()
    error = lake_errors.from_flight_error(flight.FlightServerError("x", extra_info=body))
    assert type(error) is lake_errors.Busy and error.retry_after == 7
    unknown = lake_errors.from_flight_error(flight.FlightInternalError("boom"))
    assert type(unknown) is lake_errors.LakeError and unknown.code == "internal"
    # the codes it knows are the server's: test_the_client_knows_every_code_the_server_sends


def test_client_package_needs_nothing_from_the_server(tmp_path: Path) -> None:
    script = ("import sys, flight_lake_client; "
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('flight_lake', 'pandas', 'polars')); print(bad)")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True,
                            capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "clients"), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"


# -- pandas and polars ---------------------------------------------------------------


def test_pandas_round_trip_keeps_types_and_nulls(lake: FlightLakeClient) -> None:
    frame = pd.DataFrame({
        "id": pd.array([1, 2, None], dtype="Int64"),
        "score": pd.array([1.5, None, -2.25], dtype="Float64"),
        "name": pd.array(["a", None, "c"], dtype="string"),
        "day": [datetime.date(2024, 1, 31), None, datetime.date(1999, 12, 31)],
        "flag": pd.array([True, None, False], dtype="boolean"),
    }, index=[10, 20, 30])
    manifest = lake.ingest(frame, name="frame")
    assert [c.name for c in manifest.columns] == ["id", "score", "name", "day", "flag"]

    back = lake.sql_pandas("SELECT * FROM frame ORDER BY score NULLS LAST")
    expected = frame.sort_values("score", na_position="last").reset_index(drop=True)
    assert [str(t) for t in back.dtypes] == ["Int64", "Float64", "string", "object", "boolean"]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["id"].isna().tolist() == expected["id"].isna().tolist()
    assert back["day"].tolist() == expected["day"].tolist()

    arrow_backed = lake.sql_pandas("SELECT id FROM frame", dtype_backend="pyarrow")
    assert str(arrow_backed["id"].dtype) == "int64[pyarrow]"
    assert str(lake.sql_pandas("SELECT id FROM frame", dtype_backend="numpy")["id"].dtype) == \
        "float64"  # numpy has no integer null


def test_polars_round_trip_keeps_types_and_nulls(lake: FlightLakeClient) -> None:
    frame = pl.DataFrame({
        "id": [1, None, 3],
        "score": [1.5, -2.25, None],
        "name": ["a", "b", None],
        "day": [datetime.date(2024, 1, 31), None, datetime.date(1999, 12, 31)],
        "flag": [None, True, False],
    })
    lake.ingest(frame, name="frame")
    back = lake.sql_polars("SELECT * FROM frame ORDER BY name NULLS LAST")
    assert back.schema == frame.schema
    assert back.equals(frame)
    assert lake.ingest(frame.lazy(), name="frame", mode="append").row_count == 6
