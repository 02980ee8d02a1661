"""The object cache over real storage (local folder and moto S3)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_lake.cache_budget import CacheBudget
from flight_lake.errors import NotFound, StorageError
from flight_lake.object_cache import ObjectCache
from flight_lake.storage import Storage


def _table(rows: int, start: int = 0) -> pa.Table:
    return pa.table({
        "id": pa.array(range(start, start + rows), pa.int64()),
        "name": [f"worker {i}" for i in range(start, start + rows)],
        "when": pa.array([i % 365 for i in range(rows)], pa.date32()),
    })


def _put_parquet(storage: Storage, key: str, table: pa.Table, row_group_size: int) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    storage.put(key, buffer.getvalue())


def test_first_read_streams_each_row_group_then_the_table_is_kept(storage: Storage) -> None:
    table = _table(3_000)
    _put_parquet(storage, "datasets/t/v1/part-0.parquet", table, row_group_size=1_000)
    cache = ObjectCache(storage, 64 << 20)
    assert cache.get("datasets/t/v1/part-0.parquet") is None

    stream = cache.batches("datasets/t/v1/part-0.parquet")
    first = next(stream)
    assert first.num_rows == 1_000 and len(cache) == 0  # handed on before the rest is read
    rest = list(stream)
    assert [b.num_rows for b in rest] == [1_000, 1_000]
    assert pa.Table.from_batches([first, *rest]).equals(table)

    cached = cache.get("datasets/t/v1/part-0.parquet")
    assert cached is not None and cached.equals(table)
    assert cache.nbytes == cached.nbytes > 0
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.stats() == {"bytes": cached.nbytes, "limit": 64 << 20, "objects": 1,
                             "hits": 1, "misses": 1}


def test_a_read_that_stops_early_keeps_nothing(storage: Storage) -> None:
    _put_parquet(storage, "datasets/t/v1/part-0.parquet", _table(3_000), row_group_size=1_000)
    cache = ObjectCache(storage, 64 << 20)
    stream = cache.batches("datasets/t/v1/part-0.parquet")
    next(stream)
    stream.close()  # the client went away
    assert cache.get("datasets/t/v1/part-0.parquet") is None and cache.nbytes == 0


def test_least_recently_used_objects_leave_first_within_the_bound(storage: Storage) -> None:
    keys = [f"datasets/t/v1/part-{n}.parquet" for n in range(3)]
    for n, key in enumerate(keys):
        _put_parquet(storage, key, _table(2_000, start=n * 2_000), row_group_size=2_000)
    one = _table(2_000).nbytes
    cache = ObjectCache(storage, int(2.5 * one))
    for key in keys[:2]:
        list(cache.batches(key))
    assert cache.get(keys[0]) is not None  # keys[1] is now the least recently used
    list(cache.batches(keys[2]))
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None and cache.get(keys[2]) is not None
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes


@pytest.mark.parametrize("max_bytes", [0, 1_000])
def test_objects_bigger_than_the_cache_stream_but_are_not_kept(
    storage: Storage, max_bytes: int
) -> None:
    table = _table(5_000)
    _put_parquet(storage, "datasets/t/v1/part-0.parquet", table, row_group_size=1_000)
    cache = ObjectCache(storage, max_bytes)
    assert pa.Table.from_batches(cache.batches("datasets/t/v1/part-0.parquet")).equals(table)
    assert cache.get("datasets/t/v1/part-0.parquet") is None and cache.nbytes == 0


def test_missing_and_broken_objects_are_lake_errors(storage: Storage) -> None:
    cache = ObjectCache(storage, 64 << 20)
    with pytest.raises(NotFound):
        list(cache.batches("datasets/t/v1/absent.parquet"))
    storage.put("datasets/t/v1/broken.parquet", b"PAR1 this is not parquet at all PAR1")
    with pytest.raises(StorageError, match=r"broken\.parquet"):
        list(cache.batches("datasets/t/v1/broken.parquet"))
    assert len(cache) == 0


def test_one_reader_fills_a_key_and_filling_counts_against_the_bound(storage: Storage) -> None:
    keys = [f"datasets/t/v1/part-{n}.parquet" for n in range(2)]
    for key in keys:
        _put_parquet(storage, key, _table(2_000), row_group_size=1_000)
    size = pa.Table.from_batches(ObjectCache(storage, 0).batches(keys[0])).nbytes
    cache = ObjectCache(storage, size)  # room for one object, filling or kept
    filler = cache.batches(keys[0])
    next(filler)  # holds the first half of part-0 to keep it
    assert pa.Table.from_batches(cache.batches(keys[0])).num_rows == 2_000  # streams only
    assert len(cache) == 0
    list(cache.batches(keys[1]))  # its second half does not fit beside part-0's first
    assert cache.get(keys[1]) is None
    list(filler)
    assert cache.get(keys[0]) is not None and cache.nbytes == size
    list(cache.batches(keys[1]))  # now it fills, and part-0 makes room
    assert cache.get(keys[1]) is not None and cache.get(keys[0]) is None


def test_held_and_filling_never_pass_the_shared_budget(storage: Storage) -> None:
    keys = [f"datasets/t/v1/part-{n}.parquet" for n in range(3)]
    for n, key in enumerate(keys):
        _put_parquet(storage, key, _table(2_000, start=n * 2_000), row_group_size=500)
    size = pa.Table.from_batches(ObjectCache(storage, 0).batches(keys[0])).nbytes
    budget = CacheBudget(int(1.5 * size))
    cache = ObjectCache(storage, budget)
    list(cache.batches(keys[0]))
    assert budget.used == cache.nbytes == size
    filler = cache.batches(keys[1])
    for _ in filler:  # each group reserved before it is kept: part-0 makes room on the way
        assert budget.used <= budget.max_bytes
    assert cache.get(keys[0]) is None and cache.get(keys[1]) is not None
    assert budget.used == cache.nbytes <= budget.max_bytes
    copy = budget.max_bytes - 1_000
    assert not budget.try_reserve("other", "duckdb", copy)  # does not fit beside part-1...
    assert budget.reserve("other", "duckdb", copy)  # ...so decoded objects make room
    assert len(cache) == 0 and budget.used == copy
    assert pa.Table.from_batches(cache.batches(keys[2])).num_rows == 2_000  # streams only:
    assert cache.get(keys[2]) is None  # a DuckDB copy is never evicted for decoded objects
    assert budget.used == copy <= budget.max_bytes
    assert budget.status()["datasets"] == {"other": {"arrow_bytes": 0, "duckdb_bytes": copy}}
    budget.release("other", "duckdb", copy)
    assert budget.used == 0


def test_a_commit_forgets_the_objects_of_the_version_it_supersedes(storage: Storage) -> None:
    keys = ["datasets/t/v1/part-0.parquet", "datasets/t/v2/part-0.parquet",
            "datasets/u/v1/part-0.parquet"]
    for key in keys:
        _put_parquet(storage, key, _table(100), row_group_size=100)
    cache = ObjectCache(storage, 64 << 20)
    for key in keys:
        list(cache.batches(key))
    held = cache.nbytes
    cache.forget("t", keep={keys[1]})
    assert [cache.get(key) is not None for key in keys] == [False, True, True]
    assert cache.budget.used == cache.nbytes == held * 2 // 3
