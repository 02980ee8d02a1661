"""Layout writer: an upload's batches in, objects sorted and split into partitions out.

``layout_writer(...)`` is what an ingest writes its batches to: for the flat layout the
plain ``BackgroundWriter`` of :mod:`flight_lake.parts`; for any other, a ``LayoutWriter``.
That one copies the batches to a local staging folder first (Parquet, on the part writer's
thread), counting the distinct partitions as they pass: past ``ingest.max_partitions`` the
upload is refused with ``too_many_partitions`` before anything reaches the storage. On
``close`` DuckDB reads the staged rows back in the layout's order (partition columns, then
sort columns) — an external sort within ``SORT_MEMORY``, spilling to the staging folder —
and the sorted batches go through ordinary ``PartWriter``s: one partition at a time, under
its ``<column>=<value>`` folder, each object and row group covering a narrow range of keys.
The staging folder is removed whatever happens; one a crashed server left is removed by
the next start-up (``collect_staging``, from the ingest's spool collection).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import structlog

from flight_lake import scratch
from flight_lake.catalog import DataObject
from flight_lake.database import open_database
from flight_lake.errors import InvalidInput, StorageError, TooManyPartitions
from flight_lake.layout import NULL_PARTITION, Layout, folder
from flight_lake.parts import BackgroundWriter, PartWriter
from flight_lake.query_cache import sql_identifier, sql_literal
from flight_lake.settings import IngestSettings, StorageSettings
from flight_lake.storage import Storage

log = structlog.get_logger()

SORT_MEMORY = "256MB"  # DuckDB's memory for one upload's sort; the rest spills to disk
SORT_THREADS = 2
SORTED_BATCH_ROWS = 65_536  # rows per batch read back from the sort
STAGED_COMPRESSION = "snappy"  # the staged copy is read once, soon: fast over small
STAGING_PREFIX = "flight-lake-layout-"


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
    return LayoutWriter(storage, prefix, schema, settings, layout)


class LayoutWriter:
    """Stages the batches, then writes them sorted and partitioned; see the module docstring."""

    def __init__(self, storage: Storage, prefix: str, schema: pa.Schema,
                 settings: IngestSettings, layout: Layout) -> None:
        self.storage, self.prefix, self.schema = storage, prefix, schema
        self.settings, self.layout = settings, layout
        # Locked while this ingest lives, so start-up collection (collect_staging), in any
        # server process on this machine, leaves the folder alone.
        self._held, self._folder = scratch.claim_folder(settings.spool_dir, STAGING_PREFIX)
        try:
            staging = Storage.from_settings(StorageSettings(uri=self._folder))
            staged_settings = settings.model_copy(update={"compression": STAGED_COMPRESSION})
            self._staged = BackgroundWriter(PartWriter(staging, "staged", schema,
                                                       staged_settings))
        except BaseException:
            self._remove_folder()
            raise
        self._partitions: set[tuple[Any, ...]] = set()
        self._open: BackgroundWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.layout.partition_by and batch.num_rows:
            self._count_partitions(batch)
        self._staged.write(batch)

    def close(self) -> list[DataObject]:
        try:
            staged = self._staged.close()
            return self._write_sorted([f"{self._folder}/{o.key}" for o in staged])
        except BaseException:
            self.abort()
            raise
        finally:
            self._remove_folder()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._staged.abort()
        if self._open is not None:
            with contextlib.suppress(Exception):
                self._open.abort()
            self._open = None
        self._remove_folder()

    def _remove_folder(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
        if self._held >= 0:
            os.close(self._held)
            self._held = -1

    def _count_partitions(self, batch: pa.RecordBatch) -> None:
        """Refuse the upload as soon as it brings more partitions than allowed (the set
        holds at most ``max_partitions`` keys)."""
        columns = self.layout.partition_by
        keys = pa.Table.from_batches([batch.select(columns)]).group_by(
            columns, use_threads=False).aggregate([])
        limit = self.settings.max_partitions
        for key in zip(*(keys.column(c).to_pylist() for c in columns), strict=True):
            if key in self._partitions:
                continue
            folder(columns, key)  # a value no folder can carry is refused now
            if len(self._partitions) >= limit:
                raise TooManyPartitions(
                    f"the upload has more than {limit} distinct values of partition_by "
                    f"{columns} (ingest.max_partitions); nothing was committed: partition "
                    "by a column with fewer values")
            self._partitions.add(key)

    def _write_sorted(self, staged: list[str]) -> list[DataObject]:
        order = ", ".join(f"{sql_identifier(c)} ASC NULLS LAST" for c in self.layout.order)
        source = f"read_parquet([{', '.join(sql_literal(path) for path in staged)}])"
        database = open_database({
            "memory_limit": SORT_MEMORY, "threads": str(SORT_THREADS),
            "temp_directory": f"{self._folder}/sort", "autoload_known_extensions": "false",
            "autoinstall_known_extensions": "false"})
        objects: list[DataObject] = []
        try:
            reader = database.execute(f"SELECT * FROM {source} ORDER BY {order}"
                                      ).to_arrow_reader(SORTED_BATCH_ROWS)
            for batch in reader:
                self._write_runs(batch.cast(self.schema), objects)
            if self._open is None and not objects:  # no rows: one empty object, so a view works
                self._start(self._empty_folder())
            if self._open is not None:
                objects += self._open.close()
                self._open = None
        except duckdb.Error as exc:
            raise StorageError(f"sorting the upload failed: {exc}") from exc
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(f"cannot write this data sorted: {exc}") from exc
        finally:
            database.close()
        return objects

    def _write_runs(self, batch: pa.RecordBatch, objects: list[DataObject]) -> None:
        """Write a sorted batch, starting a new partition's writer where its key changes."""
        columns = self.layout.partition_by
        if not columns:
            if self._open is None:
                self._start(self.prefix)
            assert self._open is not None
            self._open.write(batch)
            return
        # Groups of a sorted batch come out in order of first appearance, one run each.
        runs = pa.Table.from_batches([batch.select(columns)]).group_by(
            columns, use_threads=False).aggregate([([], "count_all")])
        keys = list(zip(*(runs.column(c).to_pylist() for c in columns), strict=True))
        start = 0
        for key, rows in zip(keys, runs.column("count_all").to_pylist(), strict=True):
            path = f"{self.prefix}/{folder(columns, key)}"
            if self._open is None or self._open_path != path:
                if self._open is not None:
                    objects += self._open.close()
                self._start(path)
            assert self._open is not None
            self._open.write(batch.slice(start, rows))
            start += rows

    def _start(self, path: str) -> None:
        self._open = BackgroundWriter(PartWriter(self.storage, path, self.schema, self.settings))
        self._open_path = path

    def _empty_folder(self) -> str:
        if not self.layout.partition_by:
            return self.prefix
        return "/".join([self.prefix, *(f"{c}={NULL_PARTITION}" for c in self.layout.partition_by)])
