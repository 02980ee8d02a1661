"""Layout writer: an upload's batches in, objects sorted and split into partitions out.

``layout_writer(...)`` is what an ingest writes its batches to: for the flat layout the
plain ``BackgroundWriter`` of :mod:`flight_lake.parts`; for any other, a ``LayoutWriter``.
That one splits each batch by its partition key with Arrow compute (the rows grouped by
one integer code per key, one ``take``), counting the distinct partitions as they pass:
past ``ingest.max_partitions`` the upload is refused with ``too_many_partitions`` before
anything reaches the storage. The pieces wait in memory, each partition's in its own list;
past ``BUFFER_BYTES`` they are spilled to a local staging folder as Arrow IPC files, one
per partition (nothing is open between spills, so any number of partitions costs no more
memory or descriptors). On ``close`` each partition is written in turn, in key order,
through an ordinary ``PartWriter`` under its ``<column>=<value>`` folder: as it came when
there is no ``sort_by``; sorted by Arrow in memory when it holds at most ``SORT_BYTES``;
otherwise by DuckDB's external sort within ``SORT_MEMORY``, spilling to the staging folder.
Each object and row group so covers a narrow range of keys. The staging folder is removed
whatever happens; one a crashed server left is removed by the next start-up
(``collect_staging``, from the ingest's spool collection).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import structlog

from flight_lake import scratch
from flight_lake.catalog import DataObject
from flight_lake.database import open_database
from flight_lake.errors import InvalidInput, StorageError, TooManyPartitions
from flight_lake.layout import NULL_PARTITION, Layout, folder
from flight_lake.parts import BackgroundWriter, PartWriter
from flight_lake.query_cache import sql_identifier, sql_literal
from flight_lake.settings import IngestSettings
from flight_lake.storage import Storage

log = structlog.get_logger()

BUFFER_BYTES = 64 * 1024 * 1024  # pieces held in memory before they are spilled
SORT_BYTES = 128 * 1024 * 1024  # a partition up to this is sorted in memory (twice: + copy)
SORT_MEMORY = "256MB"  # DuckDB's memory for a larger partition's sort; the rest spills
SORT_THREADS = 2
SORTED_BATCH_ROWS = 65_536  # rows per batch handed to a part writer
SPILL_GROUP_ROWS = 1 << 20  # rows per row group of a spilled Parquet file, at most
SPILL_PARQUET = "snappy"  # a large partition's spilled copy is read once, soon: fast over small
STAGING_PREFIX = "flight-lake-layout-"

Key = tuple[Any, ...]


def collect_staging(directory: str | None) -> list[str]:
    """Remove the staging folders crashed ingests left in ``directory`` (the spool folder,
    at start-up): a live one's folder is locked by its ingest."""
    removed = scratch.collect(directory, f"{STAGING_PREFIX}*")
    if removed:
        log.info("staging_folders_collected", folders=len(removed), directory=directory)
    return removed


class BatchSink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> list[DataObject]: ...
    def abort(self) -> None: ...


def layout_writer(storage: Storage, prefix: str, schema: pa.Schema, settings: IngestSettings,
                  layout: Layout) -> BatchSink:
    """Where an ingest writes its batches for ``layout`` (checked against ``schema``)."""
    if layout.flat:
        return BackgroundWriter(PartWriter(storage, prefix, schema, settings))
    # Its splitting and spilling, too, run on a thread of their own, beside the parsing.
    return BackgroundWriter(LayoutWriter(storage, prefix, schema, settings, layout))


class _Partition:
    """One partition's rows so far: pieces in memory, and the IPC files spilled before."""

    def __init__(self) -> None:
        self.pieces: list[pa.RecordBatch] = []
        self.files: list[str] = []
        self.nbytes = 0  # all of its rows, in memory or spilled (as Arrow data)


class LayoutWriter:
    """Splits the batches by partition, then writes each partition sorted; see the module
    docstring. ``buffer_bytes`` and ``sort_bytes`` bound its memory."""

    def __init__(self, storage: Storage, prefix: str, schema: pa.Schema,
                 settings: IngestSettings, layout: Layout, buffer_bytes: int = BUFFER_BYTES,
                 sort_bytes: int = SORT_BYTES) -> None:
        self.storage, self.prefix, self.schema = storage, prefix, schema
        self.settings, self.layout = settings, layout
        self.buffer_bytes, self.sort_bytes = buffer_bytes, sort_bytes
        # Locked while this ingest lives, so start-up collection (collect_staging), in any
        # server process on this machine, leaves the folder alone.
        self._held, self._folder = scratch.claim_folder(settings.spool_dir, STAGING_PREFIX)
        self._partitions: dict[Key, _Partition] = {}
        self._buffered = 0  # bytes of the pieces in memory
        self._spills = 0
        self._open: BackgroundWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        for key, piece in self._split(batch):
            partition = self._partitions.get(key)
            if partition is None:
                partition = self._partitions[key] = self._admit(key)
            partition.pieces.append(piece)
            partition.nbytes += piece.nbytes
        self._buffered += batch.nbytes
        if self._buffered >= self.buffer_bytes:
            for partition in self._partitions.values():
                self._spill(partition)
            self._buffered = 0

    def close(self) -> list[DataObject]:
        try:
            objects: list[DataObject] = []
            for key in sorted(self._partitions, key=_nulls_last):
                partition = self._partitions.pop(key)
                path = self.prefix
                if self.layout.partition_by:
                    path = f"{self.prefix}/{folder(self.layout.partition_by, key)}"
                self._open = BackgroundWriter(PartWriter(self.storage, path, self.schema,
                                                         self.settings))
                for batch in self._rows(partition):
                    self._open.write(batch)
                objects += self._open.close()
                self._open = None
            if not objects:  # no rows: one empty object, so a view works
                empty = PartWriter(self.storage, self._empty_folder(), self.schema,
                                   self.settings)
                objects = empty.close()
            return objects
        except BaseException:
            self.abort()
            raise
        finally:
            self._remove_folder()

    def abort(self) -> None:
        if self._open is not None:
            with contextlib.suppress(Exception):
                self._open.abort()
            self._open = None
        self._partitions.clear()
        self._remove_folder()

    def _remove_folder(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
        if self._held >= 0:
            os.close(self._held)
            self._held = -1

    # -- splitting ------------------------------------------------------------------------

    def _split(self, batch: pa.RecordBatch) -> list[tuple[Key, pa.RecordBatch]]:
        """The batch's rows grouped by partition key: one piece per key, in one ``take``."""
        columns = self.layout.partition_by
        if not columns:
            return [((), batch)]
        codes: pa.Array | None = None
        for name in columns:  # one dense integer code per distinct key, nulls included
            encoded = pc.dictionary_encode(batch.column(name))
            column_codes = encoded.indices.cast(pa.int64())
            if column_codes.null_count:
                column_codes = pc.fill_null(column_codes, len(encoded.dictionary))
            if codes is None:
                codes = column_codes
            else:
                combined = pc.add(pc.multiply(codes, len(encoded.dictionary) + 1), column_codes)
                codes = pc.dictionary_encode(combined).indices.cast(pa.int64())
        assert codes is not None
        bounds = pc.min_max(codes)
        if bounds["min"] == bounds["max"]:
            return [(self._key(batch, 0), batch)]
        order = pc.sort_indices(codes)
        grouped, sorted_codes = batch.take(order), codes.take(order)
        changes = pc.not_equal(sorted_codes.slice(1), sorted_codes.slice(0, len(codes) - 1))
        starts = [0, *(index + 1 for index in pc.indices_nonzero(changes).to_pylist())]
        ends = [*starts[1:], len(codes)]
        return [(self._key(grouped, start), grouped.slice(start, end - start))
                for start, end in zip(starts, ends, strict=True)]

    def _key(self, batch: pa.RecordBatch, row: int) -> Key:
        return tuple(batch.column(name)[row].as_py() for name in self.layout.partition_by)

    def _admit(self, key: Key) -> _Partition:
        """A new partition, unless it is one too many (checked before anything is stored)."""
        columns = self.layout.partition_by
        folder(columns, key)  # a value no folder can carry is refused now
        limit = self.settings.max_partitions
        if len(self._partitions) >= limit:
            raise TooManyPartitions(
                f"the upload has more than {limit} distinct values of partition_by "
                f"{columns} (ingest.max_partitions); nothing was committed: partition "
                "by a column with fewer values")
        return _Partition()

    def _spill(self, partition: _Partition) -> None:
        """Move the partition's pieces to a new file: Arrow IPC, cheapest to write and read
        back; Parquet once it is too large to sort in memory (DuckDB then reads it within
        its own memory limit, which an Arrow stream's batches escape), its IPC files
        rewritten once."""
        # Without partitions the one partition is the whole upload: once it spills at all
        # it is likely to outgrow the in-memory sort, so it goes to Parquet at once.
        large = bool(self.layout.sort_by) and (partition.nbytes > self.sort_bytes
                                                or not self.layout.partition_by)
        rewritten = [f for f in partition.files if f.endswith(".arrow")] if large else []
        if not partition.pieces and not rewritten:
            return
        if large:
            path = self._spill_path("parquet")
            with pq.ParquetWriter(path, self.schema, compression=SPILL_PARQUET) as spilled:
                for batch in self._read(rewritten):  # one batch a file: one row group each
                    spilled.write_batch(batch)
                if partition.pieces:  # one row group, not one per piece
                    spilled.write_table(pa.Table.from_batches(partition.pieces, self.schema),
                                        row_group_size=SPILL_GROUP_ROWS)
            for old in rewritten:
                os.remove(old)
                partition.files.remove(old)
        else:
            path = self._spill_path("arrow")
            # One batch per file: the pieces of small parsed blocks cost per batch, later.
            pieces = pa.Table.from_batches(partition.pieces, schema=self.schema)
            with ipc.new_file(path, self.schema) as spilled:
                spilled.write_table(pieces.combine_chunks())
        partition.files.append(path)
        partition.pieces = []

    def _spill_path(self, suffix: str) -> str:
        self._spills += 1
        return f"{self._folder}/spill-{self._spills}.{suffix}"

    # -- writing --------------------------------------------------------------------------

    def _rows(self, partition: _Partition) -> Iterator[pa.RecordBatch]:
        """A partition's rows, in the layout's sort order, in batches of a useful size."""
        if partition.nbytes > self.sort_bytes:
            if self.layout.sort_by:
                yield from self._sorted_by_duckdb(partition)
            else:
                yield from self._stored(partition)
            return
        # Contiguous first: sorting and taking chunked columns cost twice as much.
        table = pa.Table.from_batches(list(self._stored(partition)),
                                      schema=self.schema).combine_chunks()
        if self.layout.sort_by:
            order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_end")
                                                      for c in self.layout.sort_by])
            table = table.take(order)
        yield from table.to_batches(max_chunksize=SORTED_BATCH_ROWS)

    def _stored(self, partition: _Partition) -> Iterator[pa.RecordBatch]:
        yield from self._read(partition.files)
        yield from partition.pieces

    def _read(self, files: list[str]) -> Iterator[pa.RecordBatch]:
        for path in files:
            if path.endswith(".parquet"):
                yield from pq.ParquetFile(path).iter_batches(SORTED_BATCH_ROWS)
                continue
            with pa.OSFile(path) as source:  # not mapped: its pages would count as ours
                spilled = ipc.open_file(source)
                for index in range(spilled.num_record_batches):
                    yield spilled.get_batch(index)

    def _sorted_by_duckdb(self, partition: _Partition) -> Iterator[pa.RecordBatch]:
        self._spill(partition)  # all of it in Parquet files now
        order = ", ".join(f"{sql_identifier(c)} ASC NULLS LAST" for c in self.layout.sort_by)
        source = f"read_parquet([{', '.join(sql_literal(path) for path in partition.files)}])"
        database = open_database({
            "memory_limit": SORT_MEMORY, "threads": str(SORT_THREADS),
            "temp_directory": f"{self._folder}/sort", "autoload_known_extensions": "false",
            "autoinstall_known_extensions": "false"})
        try:
            reader = database.execute(f"SELECT * FROM {source} ORDER BY {order}"
                                      ).to_arrow_reader(SORTED_BATCH_ROWS)
            for batch in reader:
                yield batch.cast(self.schema)
        except duckdb.Error as exc:
            raise StorageError(f"sorting the upload failed: {exc}") from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(f"cannot write this data sorted: {exc}") from exc
        finally:
            database.close()

    def _empty_folder(self) -> str:
        if not self.layout.partition_by:
            return self.prefix
        return "/".join([self.prefix, *(f"{c}={NULL_PARTITION}" for c in self.layout.partition_by)])


def _nulls_last(key: Key) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is None, value) for value in key)
