"""A bounded LRU of decoded data objects: Arrow tables kept in memory by object key.

Data objects are immutable: a key's bytes never change once written, so a cached table
never needs revalidation; it leaves to make room, or when a commit supersedes its dataset's
version (``forget``). A miss decodes the object one row group at a time and hands each
group on as soon as it is decoded, so the first reader streams at Parquet-decode speed
instead of waiting for the whole object; once that reader has seen every group the table is
kept. A hit is a table already in memory, which Flight streams without Python per batch
(the read path serves it to every front end; docs/adr/0006-scan-path.md).

Every byte held or being filled is reserved from the lake's one cache budget
(:mod:`flight_lake.cache_budget`, ``[cache] max_bytes``) first, so the cache never holds
more than the budget allows; the budget asks this cache to make room (least recently used
first) when anything else needs it. Only a completed read fills it, so a client that stops
early keeps nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from flight_lake.cache_budget import CacheBudget
from flight_lake.catalog import DATASETS
from flight_lake.errors import StorageError
from flight_lake.storage import Storage

log = structlog.get_logger()


def dataset_of(key: str) -> str:
    """The dataset a data object belongs to (``datasets/<name>/…``), for the budget."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) > 2 and parts[0] == DATASETS else ""


class ObjectCache:
    """Decoded data objects by key, least recently used first out; thread-safe.

    Lock: ``_lock`` guards the tables and counters; it may be held while releasing bytes to
    the budget (order: ``ObjectCache._lock`` → ``CacheBudget._lock``), never while reserving.
    """

    def __init__(self, storage: Storage, budget: CacheBudget | int) -> None:
        self.storage = storage
        self.budget = budget if isinstance(budget, CacheBudget) else CacheBudget(budget)
        self.budget.evict_with(self._make_room)
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._sizes: dict[str, int] = {}  # bytes reserved for each table held
        self._bytes = 0
        self._filling: set[str] = set()  # keys a reader is decoding to keep
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self.budget.max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes of decoded Arrow data held now."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._tables)

    def stats(self) -> dict[str, int]:
        """What ``health`` shows: bytes held, the budget, objects held, hits and misses."""
        with self._lock:
            return {"bytes": self._bytes, "limit": self.budget.max_bytes,
                    "objects": len(self._tables), "hits": self.hits, "misses": self.misses}

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

    def forget(self, dataset: str, keep: set[str]) -> None:
        """Drop ``dataset``'s objects other than ``keep`` (its new version's): a commit."""
        with self._lock:
            stale = [key for key in self._tables if dataset_of(key) == dataset
                     and key not in keep]
            for key in stale:
                self._evict(key)
        if stale:
            log.info("object_cache_forgot", dataset=dataset, objects=len(stale))

    def batches(self, key: str) -> Generator[pa.RecordBatch, None, None]:
        """Decode ``key`` row group by row group, yielding each; keep it once fully read.

        One reader at a time fills a key; others reading it meanwhile only stream. Each
        group a filling reader keeps is reserved from the budget before it is kept, so
        what is held and what is filling never pass it together. Raises ``NotFound`` or
        ``StorageError`` (also for a file that is not valid Parquet).
        """
        dataset = dataset_of(key)
        filling = self._start_filling(key)
        kept: list[pa.RecordBatch] | None = [] if filling else None
        reserved = 0
        try:
            with self.storage.open_read(key) as handle:
                try:
                    parquet = pq.ParquetFile(handle)
                    schema = parquet.schema_arrow
                    for index in range(parquet.num_row_groups):
                        group = parquet.read_row_group(index).to_batches()
                        if kept is not None:
                            size = sum(batch.nbytes for batch in group)
                            if self.budget.reserve(dataset, "arrow", size):
                                reserved += size
                                kept.extend(group)
                            else:  # no room to keep it: stream it, cache nothing
                                kept = None
                                self.budget.release(dataset, "arrow", reserved)
                                reserved = 0
                        yield from group
                except pa.ArrowException as exc:
                    raise StorageError(f"cannot read data object {key}: {exc}") from exc
            if kept is not None:
                self._put(key, pa.Table.from_batches(kept, schema=schema), reserved)
                reserved = 0
        finally:
            if filling:
                with self._lock:
                    self._filling.discard(key)
            self.budget.release(dataset, "arrow", reserved)

    def _start_filling(self, key: str) -> bool:
        with self._lock:
            if self.budget.max_bytes <= 0 or key in self._filling or key in self._tables:
                return False
            self._filling.add(key)
            return True

    def _put(self, key: str, table: pa.Table, reserved: int) -> None:
        """Keep ``table``, whose ``reserved`` bytes are already reserved (now held)."""
        with self._lock:
            if key in self._tables:
                self.budget.release(dataset_of(key), "arrow", reserved)
                return
            self._tables[key] = table
            self._sizes[key] = reserved
            self._bytes += reserved
        log.debug("object_cached", key=key, bytes=reserved)

    def _make_room(self, needed: int) -> int:
        """The budget asks for ``needed`` bytes: evict least recently used objects."""
        freed = 0
        with self._lock:
            while freed < needed and self._tables:
                freed += self._evict(next(iter(self._tables)))
        return freed

    def _evict(self, key: str) -> int:  # under self._lock
        del self._tables[key]
        size = self._sizes.pop(key)
        self._bytes -= size
        self.budget.release(dataset_of(key), "arrow", size)
        return size
