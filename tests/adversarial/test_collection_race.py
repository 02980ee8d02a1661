"""Finding 8 (in part): an ingest never commits objects that no longer exist.

A server starting over the same storage collected another server's running ingest's
parts, and that ingest then committed a manifest pointing at missing objects. Here a
collection with no grace period runs while an Arrow upload is still streaming (as a
second server's start-up would); the ingest must fail and commit nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from flight_lake.catalog import Catalog
from flight_lake.errors import StorageError
from flight_lake.ingest import IngestService
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from tests.support import make_settings


def test_objects_collected_mid_ingest_are_never_committed(tmp_path: Path) -> None:
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             ingest={"rows_per_part": 100, "gc_grace_seconds": 0})
    storage = Storage.from_settings(settings.storage)
    ingest = IngestService(storage, Catalog(storage), settings)
    other_server = Catalog(storage)  # the same storage, seen by a second process
    table = pa.table({"id": list(range(1000))})

    def batches() -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(table.to_batches(max_chunksize=100)):
            if number == 8:  # parts 0..6 are written by now: a start-up collects them
                removed = other_server.collect_garbage(0)
                assert removed, "the collection found nothing to remove"
            yield batch

    with pytest.raises(StorageError, match="nothing was committed"):
        ingest.ingest_arrow("raced", "create", table.schema, batches())
    assert Catalog(storage).history("raced") == []
