"""Parquet parts: record batches in, data objects out, encoded on a writer thread.

``PartWriter`` cuts a stream of batches into row groups and parts (one storage object each,
``part-<n>.parquet`` under a version prefix); ``BackgroundWriter`` runs it (or any
``BatchWriter``) on one thread so encoding overlaps with parsing. Both belong to one ingest
and know nothing of the catalog beyond ``DataObject``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flight_lake import heap
from flight_lake.catalog import DataObject
from flight_lake.iceberg.field_ids import with_field_ids
from flight_lake.settings import IngestSettings
from flight_lake.storage import Storage

DICTIONARY_PROBE_ROWS = 10_000  # rows looked at to choose the dictionary-encoded columns


class PartWriter:
    """Batches in, Parquet parts out: ``row_group_rows`` per row group (fewer once the rows
    waiting hold ``row_group_bytes`` of Arrow data: wide rows stay within memory), a new
    part every ``rows_per_part`` rows, and one zero-row part if no row ever came (so a view
    works)."""

    def __init__(self, storage: Storage, prefix: str, schema: pa.Schema,
                 settings: IngestSettings) -> None:
        self.storage, self.prefix, self.schema, self.settings = storage, prefix, schema, settings
        self.parts: list[DataObject] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._part_rows = 0
        self._open: tuple[contextlib.ExitStack, IO[bytes], pq.ParquetWriter, str] | None = None
        self._dictionary: bool | list[str] | None = None  # decided on the first rows

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            self._pending_bytes += batch.nbytes
        while self._pending_rows and self._pending_rows >= self._room():
            self._flush(self._room())
        if self._pending_bytes >= self.settings.row_group_bytes:
            self._flush(self._pending_rows)

    def close(self) -> list[DataObject]:
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._open is None and not self.parts:
            self._writer()
        if self._open is not None:
            self._close_part()
        return self.parts

    def abort(self) -> None:
        """Close quietly; the caller deletes the version prefix."""
        if self._open is not None:
            stack, _, writer, _ = self._open
            self._open = None
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(Exception):
                stack.close()

    def _room(self) -> int:
        return min(self.settings.row_group_rows, self.settings.rows_per_part - self._part_rows)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._writer().write_table(table.slice(0, rows), row_group_size=rows)
        rest = table.slice(rows)
        self._pending, self._pending_rows = rest.to_batches(), rest.num_rows
        self._pending_bytes = rest.nbytes
        self._part_rows += rows
        if self._part_rows >= self.settings.rows_per_part:
            self._close_part()
        heap.release()  # the row group's encoding buffers: see flight_lake.heap

    def _writer(self) -> pq.ParquetWriter:
        if self._open is None:
            key = f"{self.prefix}/part-{len(self.parts)}.parquet"
            stack = contextlib.ExitStack()
            handle = stack.enter_context(self.storage.open_write(key))
            if self._dictionary is None:
                self._dictionary = _dictionary_columns(self.schema, self._pending)
            writer = pq.ParquetWriter(handle, with_field_ids(self.schema),  # Iceberg's IDs
                                      compression=self.settings.compression,
                                      use_dictionary=self._dictionary)
            self._open = (stack, handle, writer, key)
        return self._open[2]

    def _close_part(self) -> None:
        assert self._open is not None
        stack, handle, writer, key = self._open
        self._open = None
        with stack:
            writer.close()
            size = handle.tell()
        self.parts.append(DataObject(key=key, size=size, row_count=self._part_rows))
        self._part_rows = 0


def _dictionary_columns(schema: pa.Schema, batches: list[pa.RecordBatch]) -> bool | list[str]:
    """The columns worth dictionary-encoding, judged on the first rows: not those where most
    values differ (ids, e-mails), which cost a third of the write time and grow the file."""
    head = pa.Table.from_batches(batches, schema=schema).slice(0, DICTIONARY_PROBE_ROWS)
    if head.num_rows < DICTIONARY_PROBE_ROWS // 10 or any(
            pa.types.is_nested(kind) for kind in schema.types):
        return True  # too little to judge, or nested leaves (named by path) are involved
    return [name for name, column in zip(schema.names, head.columns, strict=True)
            if pc.count_distinct(column).as_py() * 2 <= len(column) - column.null_count]


class BatchWriter(Protocol):
    """What a ``BackgroundWriter`` runs: a ``PartWriter``, or a layout's writer."""

    settings: IngestSettings

    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> list[DataObject]: ...
    def abort(self) -> None: ...


class BackgroundWriter:
    """Runs a ``PartWriter`` on one thread, so Parquet encoding overlaps with parsing (or
    receiving). Up to a row group's worth of rows may wait for it, so it always has the next
    group ready, but no more than half of ``row_group_bytes``: rows so wide that the bytes
    bound cuts their row groups are encoded far slower than they are parsed, and a longer
    queue would only hold memory. Its errors surface in the caller."""

    def __init__(self, parts: BatchWriter) -> None:
        self._parts = parts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._queued: deque[tuple[Future[None], int, int]] = deque()
        self._queued_rows = self._queued_bytes = 0
        self._max_rows = parts.settings.row_group_rows
        self._max_bytes = max(1, parts.settings.row_group_bytes // 2)

    def write(self, batch: pa.RecordBatch) -> None:
        self._queued.append((self._pool.submit(self._parts.write, batch), batch.num_rows,
                             batch.nbytes))
        self._queued_rows += batch.num_rows
        self._queued_bytes += batch.nbytes
        while self._queued and (self._queued_rows > self._max_rows or self._queued[0][0].done()
                                or self._queued_bytes > self._max_bytes):
            self._wait_oldest()

    def close(self) -> list[DataObject]:
        while self._queued:
            self._wait_oldest()
        parts = self._pool.submit(self._parts.close).result()
        self._pool.shutdown()
        return parts

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._parts.abort()

    def _wait_oldest(self) -> None:
        future, rows, nbytes = self._queued.popleft()
        self._queued_rows -= rows
        self._queued_bytes -= nbytes
        future.result()
