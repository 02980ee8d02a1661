"""Storage on both backends: round trips, listing, create-only commits, key checks."""

from __future__ import annotations

import threading

import pytest

from flight_lake.errors import InvalidInput, NotFound
from flight_lake.storage import Storage


def test_put_get_list_delete(storage: Storage) -> None:
    storage.put("datasets/a/v1/part-0.parquet", b"one")
    with storage.open_write("datasets/a/v1/part-1.parquet") as handle:
        handle.write(b"two")
    assert storage.get("datasets/a/v1/part-0.parquet") == b"one"
    with storage.open_read("datasets/a/v1/part-1.parquet") as handle:
        assert handle.read() == b"two"
    assert [(o.key, o.size) for o in storage.list("datasets/a")] == [
        ("datasets/a/v1/part-0.parquet", 3),
        ("datasets/a/v1/part-1.parquet", 3),
    ]
    assert storage.list_children("datasets/a") == ["v1"]
    storage.delete_prefix("datasets/a/v1")
    assert storage.list("datasets") == []
    assert storage.list("nothing/here") == []


def test_missing_object_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.get("datasets/none/v/part-0.parquet")


def test_put_if_absent_has_exactly_one_winner(storage: Storage) -> None:
    key = "_catalog/manifests/a/00000001.parquet"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait()
        results.append(storage.put_if_absent(key, f"writer-{n}".encode()))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert storage.get(key).startswith(b"writer-")
    assert [o.key for o in storage.list("_catalog")] == [key]


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "a//b", "a/../../b", ".x", ""])
def test_keys_outside_the_root_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidInput):
        storage.get(key)


def test_url_is_what_duckdb_reads(storage: Storage) -> None:
    url = storage.url("datasets/a/v1/part-0.parquet")
    if storage.backend == "s3":
        assert url.startswith("s3://") and url.endswith("/prefix/datasets/a/v1/part-0.parquet")
    else:
        assert url.startswith("/") and url.endswith("/lake/datasets/a/v1/part-0.parquet")
