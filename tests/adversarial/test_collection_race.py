"""Finding 8: live ingests keep their objects, and never commit objects that are gone.

A server starting over the same storage collected another server's running ingest's
parts, and that ingest then committed a manifest pointing at missing objects. A running
ingest now keeps a lease in its folder that every collection honours whatever the grace
period; and should its objects go anyway (a collector that ignores leases), the ingest
checks them before committing and commits nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from flight_lake.catalog import Catalog
from flight_lake.errors import StorageError
from flight_lake.ingest import IngestService
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from tests.support import make_settings, wait_until


def test_objects_collected_mid_ingest_are_never_committed(tmp_path: Path) -> None:
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             ingest={"rows_per_part": 100, "gc_grace_seconds": 0})
    storage = Storage.from_settings(settings.storage)
    ingest = IngestService(storage, Catalog(storage), settings)
    other_server = Catalog(storage)  # the same storage, seen by a second process
    table = pa.table({"id": list(range(1000))})

    def batches() -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(table.to_batches(max_chunksize=100)):
            if number == 8:  # once parts are written, a start-up that ignores leases
                # (an older server) collects them; all eight parts of the batches so far
                # must exist first, or the collection races the writer creating one
                wait_until(lambda: sum(o.key.endswith(".parquet")
                                       for o in storage.list("datasets/raced")) == 8)
                removed = other_server.collect_garbage(0, lease_seconds=0)
                assert removed, "the collection found nothing to remove"
            yield batch

    with pytest.raises(StorageError, match="nothing was committed"):
        ingest.ingest_arrow("raced", "create", table.schema, batches())
    assert Catalog(storage).history("raced") == []


def test_a_live_ingest_keeps_its_folder_whatever_the_grace(tmp_path: Path) -> None:
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             ingest={"rows_per_part": 100})
    storage = Storage.from_settings(settings.storage)
    ingest = IngestService(storage, Catalog(storage), settings)
    other_server = Catalog(storage)
    table = pa.table({"id": list(range(1000))})
    collected: list[list[str]] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(table.to_batches(max_chunksize=100)):
            if number == 8:
                wait_until(lambda: any(o.key.endswith(".parquet")
                                       for o in storage.list("datasets/leased")))
                collected.append(other_server.collect_garbage(0))
            yield batch

    manifest = ingest.ingest_arrow("leased", "create", table.schema, batches())
    assert collected == [[]]  # the running ingest's lease kept its folder
    assert manifest.row_count == 1000
    assert sorted(o.key for o in manifest.objects) == sorted(
        o.key for o in storage.list("datasets/leased"))  # and no lease is left behind


def test_a_crashed_ingests_stale_lease_does_not_keep_its_folder(tmp_path: Path) -> None:
    storage = Storage.from_settings(StorageSettings(uri=str(tmp_path / "lake")))
    folder = "datasets/crashed/20200101T000000-abcdef012345"
    storage.put(f"{folder}/part-0.parquet", b"partial")
    storage.put(f"{folder}/_lease", b"1577836800.000")  # renewed last in 2020
    assert Catalog(storage).collect_garbage(3600) == [folder]


def test_start_up_removes_crash_left_spool_files_only(tmp_path: Path) -> None:
    import fcntl
    import os

    spool = tmp_path / "spool"
    spool.mkdir()
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), spool)
    storage = Storage.from_settings(settings.storage)
    orphan = spool / "flight-lake-upload-crashed.csv"
    orphan.write_bytes(b"a,b\n" * 1000)
    live = spool / "flight-lake-upload-live.csv"
    live.write_bytes(b"a,b\n")
    other = spool / "unrelated.csv"
    other.write_bytes(b"x")
    held = os.open(live, os.O_RDONLY)  # another server's ingest holds its spool file
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = IngestService(storage, Catalog(storage), settings).collect_spool()
    finally:
        os.close(held)
    assert removed == [str(orphan)]
    assert not orphan.exists() and live.exists() and other.exists()


def test_collection_removes_commit_temporaries_a_crash_left(tmp_path: Path) -> None:
    storage = Storage.from_settings(StorageSettings(uri=str(tmp_path / "lake")))
    catalog = Catalog(storage)
    catalog.commit("kept", "create", pa.schema([("id", pa.int64())]), [])
    manifests = tmp_path / "lake" / "_catalog" / "manifests" / "kept"
    crashed = manifests / ".tmp-0123456789abcdef"  # put_if_absent killed before its link
    crashed.write_bytes(b"half a manifest")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    writing = manifests / ".tmp-fedcba9876543210"  # a commit writing right now
    writing.write_bytes(b"a manifest being written")

    catalog.collect_garbage(3600)

    assert not crashed.exists()
    assert writing.exists()  # younger than the grace: a live commit's, left alone
    assert Catalog(storage).history("kept") == [1]
