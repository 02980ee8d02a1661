"""A bounded LRU of decoded data objects: Arrow tables kept in memory by object key.

Data objects are immutable (DESIGN.md): a key's bytes never change once written, so a
cached table never needs revalidation and leaves only to make room. A miss decodes the
object one row group at a time and hands each group on as soon as it is decoded, so the
first reader streams at Parquet-decode speed instead of waiting for the whole object;
once that reader has seen every group the table is kept. A hit is a table already in
memory, which Flight streams without Python per batch (:mod:`flight_lake.scan` serves
it to both front ends; docs/adr/0006-scan-path.md).

``max_bytes`` bounds the decoded tables held (``flight.object_cache_bytes``; 0 turns the
cache off). Only a completed read fills it, so a client that stops early keeps nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from flight_lake.errors import StorageError
from flight_lake.storage import Storage

log = structlog.get_logger()


class ObjectCache:
    """Decoded data objects by key, least recently used first out; thread-safe."""

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._bytes = 0
        self._filling: set[str] = set()  # keys a reader is decoding to keep
        self._filling_bytes = 0  # what those readers hold so far
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes of decoded Arrow data held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._tables)

    def stats(self) -> dict[str, int]:
        """What ``health`` shows: bytes held, the bound, objects held, hits and misses."""
        with self._lock:
            return {"bytes": self._bytes, "limit": self.max_bytes, "objects": len(self._tables),
                    "hits": self.hits, "misses": self.misses}

    def get(self, key: str) -> pa.Table | None:
        """The cached table of ``key`` (now the most recently used), or None."""
        with self._lock:
            table = self._tables.get(key)
            if table is None:
                self.misses += 1
                return None
            self._tables.move_to_end(key)
            self.hits += 1
            return table

    def batches(self, key: str) -> Generator[pa.RecordBatch, None, None]:
        """Decode ``key`` row group by row group, yielding each; keep it once fully read.

        One reader at a time fills a key; others reading it meanwhile only stream. The
        groups held by readers still filling count against ``max_bytes`` too, so the
        cache never holds more than twice that. Raises ``NotFound`` or ``StorageError``
        (also for a file that is not valid Parquet).
        """
        filling = self._start_filling(key)
        kept: list[pa.RecordBatch] | None = [] if filling else None
        kept_bytes = 0
        try:
            with self.storage.open_read(key) as handle:
                try:
                    parquet = pq.ParquetFile(handle)
                    schema = parquet.schema_arrow
                    for index in range(parquet.num_row_groups):
                        group = parquet.read_row_group(index).to_batches()
                        if kept is not None:
                            size = sum(batch.nbytes for batch in group)
                            if self._reserve(size):
                                kept_bytes += size
                                kept.extend(group)
                            else:  # no room to keep it: stream it, cache nothing
                                kept = None
                        yield from group
                except pa.ArrowException as exc:
                    raise StorageError(f"cannot read data object {key}: {exc}") from exc
            if kept is not None:
                self._put(key, pa.Table.from_batches(kept, schema=schema))
        finally:
            if filling:
                self._stop_filling(key, kept_bytes)

    def _start_filling(self, key: str) -> bool:
        with self._lock:
            if self.max_bytes <= 0 or key in self._filling or key in self._tables:
                return False
            self._filling.add(key)
            return True

    def _reserve(self, size: int) -> bool:
        with self._lock:
            if self._filling_bytes + size > self.max_bytes:
                return False
            self._filling_bytes += size
            return True

    def _stop_filling(self, key: str, kept_bytes: int) -> None:
        with self._lock:
            self._filling.discard(key)
            self._filling_bytes -= kept_bytes

    def _put(self, key: str, table: pa.Table) -> None:
        size = table.nbytes
        with self._lock:
            if key in self._tables or size > self.max_bytes:
                return
            while self._bytes + size > self.max_bytes:
                _, evicted = self._tables.popitem(last=False)
                self._bytes -= evicted.nbytes
            self._tables[key] = table
            self._bytes += size
        log.debug("object_cached", key=key, bytes=size, cached_bytes=self._bytes)
