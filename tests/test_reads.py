"""The one read path (``Lake.read``): the decision, the deadline and cancellation by read id."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from flight_lake.errors import Cancelled, InvalidInput, QueryTimeout, Unavailable
from flight_lake.lake import Lake
from flight_lake.settings import Settings, StorageSettings
from tests.support import make_settings


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
    import threading

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
    with lake.read(sql, timeout=0.05) as result:
        batches = result.batches()
        next(batches)
        time.sleep(0.1)  # past the deadline: the next batch must not come
        with pytest.raises(QueryTimeout):
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
