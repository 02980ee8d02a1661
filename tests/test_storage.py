"""Storage on both backends: round trips, listing, create-only commits, key checks, and
the start-up check and health probe."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from flight_lake.errors import InvalidInput, NotFound, StorageError
from flight_lake.settings import StorageSettings
from flight_lake.storage import BACKENDS, Storage, backend_for
from tests.support import S3_KEY, S3_REGION, S3_SECRET, make_bucket


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


def test_listings_and_exists_over_many_pages(storage: Storage) -> None:
    """S3 lists in pages (three keys each here): listings follow them to the end, and
    ``exists`` answers for objects, present or not."""
    storage.list_page_keys = 3  # type: ignore[attr-defined]  # S3's page size; unused locally
    keys = [f"_catalog/manifests/{name}/{version:010d}.parquet"
            for name in ("a", "b") for version in range(1, 6)]
    for key in keys:
        storage.put(key, b"m")
    storage.put("_catalog/pulse", b"p")
    assert [o.key for o in storage.list("_catalog/manifests")] == keys
    assert storage.list_children("_catalog") == ["manifests", "pulse"]
    assert storage.list_children("_catalog/manifests/a") == [k.rsplit("/", 1)[1]
                                                             for k in keys[:5]]
    assert storage.list_children("_catalog/manifests/c") == []
    assert storage.exists(keys[0]) and storage.exists("_catalog/pulse")
    assert not storage.exists("_catalog/manifests/a/0000000009.parquet")


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


# -- start-up check and health probe ---------------------------------------------------------


def _s3_settings(endpoint: str, bucket: str, **extra: object) -> StorageSettings:
    return StorageSettings(uri=f"s3://{bucket}/lake", endpoint_url=endpoint, region=S3_REGION,
                           access_key_id=S3_KEY, secret_access_key=S3_SECRET, **extra)


def test_prepare_passes_on_a_bucket_that_takes_writes(storage: Storage) -> None:
    storage.prepare()
    assert storage.list("") == []  # the write probe removed its object
    assert storage.reachability() == {"status": "ok"}


def test_missing_bucket_is_one_line_naming_bucket_endpoint_and_fix(s3_endpoint: str) -> None:
    make_bucket(s3_endpoint)  # resets moto: the bucket below does not exist
    storage = Storage.from_settings(_s3_settings(s3_endpoint, "absent-bucket"))
    with pytest.raises(StorageError) as caught:
        storage.prepare()
    detail = caught.value.detail
    assert "\n" not in detail
    assert "'absent-bucket'" in detail and s3_endpoint in detail
    assert "--create-bucket" in detail and "aws s3 mb s3://absent-bucket" in detail


def test_prepare_creates_the_bucket_when_asked(s3_endpoint: str) -> None:
    make_bucket(s3_endpoint)
    storage = Storage.from_settings(_s3_settings(s3_endpoint, "made-at-start"))
    storage.prepare(create=True)
    s3 = _boto(s3_endpoint)
    assert "made-at-start" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    storage.put("datasets/a/v/part-0.parquet", b"x")
    assert storage.get("datasets/a/v/part-0.parquet") == b"x"


def test_health_probe_sees_a_deleted_bucket_at_most_once_per_interval(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    cached = Storage.from_settings(_s3_settings(s3_endpoint, bucket, probe_seconds=3600))
    fresh = Storage.from_settings(_s3_settings(s3_endpoint, bucket, probe_seconds=0))
    assert cached.reachability() == fresh.reachability() == {"status": "ok"}
    _boto(s3_endpoint).delete_bucket(Bucket=bucket)
    gone = fresh.reachability()
    assert gone["status"] == "unreachable" and gone["detail"]
    assert cached.reachability() == {"status": "ok"}  # not asked again within the interval


def test_local_root_that_cannot_be_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the storage folder"):
        Storage.from_settings(StorageSettings(uri=str(tmp_path / "file" / "lake")))


def test_a_vanished_local_folder_is_unreachable(tmp_path: Path) -> None:
    storage = Storage.from_settings(StorageSettings(uri=str(tmp_path / "lake"), probe_seconds=0))
    storage.prepare()
    assert storage.reachability() == {"status": "ok"}
    shutil.rmtree(tmp_path / "lake")
    assert storage.reachability()["status"] == "unreachable"


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="file://, s3://"):
        backend_for("gs://bucket")
    assert backend_for("s3://b") is BACKENDS["s3"] and backend_for("./lake") is BACKENDS[""]


def _boto(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY,
                        aws_secret_access_key=S3_SECRET, region_name=S3_REGION)


def test_an_endpoint_that_does_not_answer_is_named_at_start_and_in_health() -> None:
    closed = StorageSettings(uri="s3://lake/x", endpoint_url="http://127.0.0.1:9",
                             access_key_id=S3_KEY, secret_access_key=S3_SECRET, probe_seconds=0)
    storage = Storage.from_settings(closed)
    with pytest.raises(StorageError) as caught:
        storage.prepare()
    assert "\n" not in caught.value.detail
    assert caught.value.detail.startswith("cannot reach bucket 'lake' at http://127.0.0.1:9")
    assert "storage.endpoint_url" in caught.value.detail
    assert storage.reachability()["status"] == "unreachable"


@pytest.mark.s3
def test_a_large_s3_object_goes_up_in_parts_and_a_failed_one_leaves_nothing(
    s3_endpoint: str,
) -> None:
    bucket = make_bucket(s3_endpoint)
    storage = Storage.from_settings(_s3_settings(s3_endpoint, bucket,
                                                 multipart_part_bytes=5 << 20,
                                                 multipart_uploads=2))
    data = bytes(range(256)) * (50 << 10)  # 12.5 MiB: two full parts and a short one
    with storage.open_write("datasets/a/v1/part-0.parquet") as handle:
        for start in range(0, len(data), 1 << 20):
            handle.write(data[start:start + (1 << 20)])
        assert handle.tell() == len(data)
    assert storage.get("datasets/a/v1/part-0.parquet") == data
    head = _boto(s3_endpoint).head_object(Bucket=bucket, Key="lake/datasets/a/v1/part-0.parquet",
                                          PartNumber=1)
    assert head["PartsCount"] == 3

    with pytest.raises(RuntimeError), storage.open_write("datasets/a/v1/part-1.parquet") as handle:
        handle.write(data)  # two parts sent
        raise RuntimeError("the encoder failed")
    assert [o.key for o in storage.list("datasets")] == ["datasets/a/v1/part-0.parquet"]
    assert _boto(s3_endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
