"""Ingest: CSV bytes or Arrow batches in, Parquet objects and a committed manifest out.

INTERFACE STUB — being implemented. Contract:

- ``IngestService(storage, catalog, settings)``.
- ``ingest_csv(name, mode, chunks)``: ``chunks`` is an iterable of ``bytes`` holding the raw
  CSV file in order (any chunk sizes). Returns the committed ``Manifest``.
- ``ingest_arrow(name, mode, schema, batches)``: ``batches`` iterates ``pa.RecordBatch``.
- Both: take one of ``limits.max_concurrent_ingests`` slots without waiting (else ``Busy``);
  count bytes while streaming and raise ``TooLarge`` past ``limits.max_upload_bytes``; never
  hold the whole upload in memory; on any failure delete the objects written so far and
  commit nothing; raise only ``LakeError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from flight_lake.catalog import Catalog, Manifest, Mode
from flight_lake.settings import Settings
from flight_lake.storage import Storage


class IngestService:
    def __init__(self, storage: Storage, catalog: Catalog, settings: Settings) -> None:
        self.storage = storage
        self.catalog = catalog
        self.settings = settings

    def ingest_csv(self, name: str, mode: Mode, chunks: Iterable[bytes]) -> Manifest:
        raise NotImplementedError

    def ingest_arrow(
        self, name: str, mode: Mode, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Manifest:
        raise NotImplementedError

    @property
    def active(self) -> int:
        """How many ingests are running now (for /health)."""
        raise NotImplementedError
