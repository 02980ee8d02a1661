"""Ingest: CSV bytes or Arrow batches in, Parquet objects and a committed manifest out.

- ``IngestService(storage, catalog, settings)``.
- ``ingest_csv(name, mode, chunks)``: ``chunks`` is an iterable of bytes-like objects holding
  the raw CSV file in order (any chunk sizes). Returns the committed ``Manifest``.
- ``ingest_arrow(name, mode, schema, batches)``: ``batches`` iterates ``pa.RecordBatch``.
- Both take ``layout`` (``partition_by``/``sort_by``, :mod:`flight_lake.layout`): ``None``
  keeps an appended dataset's layout and makes a created or replaced one flat.
- Both take one of ``ingest.max_concurrent_ingests`` slots without waiting (else ``Busy``),
  check the name and mode against the catalog before reading any data, count bytes while
  streaming (``TooLarge`` past ``ingest.max_upload_bytes``), never hold the whole upload in
  memory, and on any failure (``Cancelled`` when the client went away) delete the objects
  written so far, leave no empty dataset folder and commit nothing. They raise only
  ``LakeError`` subclasses.
- A digest of the content is taken while it streams (``csv_input`` for CSV, which also
  refuses what is not CSV text and decompresses gzip/zstd). A ``create`` or ``replace``
  whose content is the current version's is a no-op: the current manifest comes back with
  ``unchanged`` set, and the objects written meanwhile are not kept.

Parquet and Arrow IPC files are taken too (recognised by their first bytes, checked and
stored by ``columnar_input``). Several files become one version through a transaction
(``begin``, ``stage`` each file, ``commit`` once; ``staging`` keeps them until then).

A CSV upload is received into a spool file by one thread (``spool``) while the ingest
parses what has arrived, typed by ``csv_schema``'s policy, and a writer thread encodes the
Parquet parts: receiving, parsing and writing overlap, each stage bounded (the spool is on
disk; at most a row group waits for the writer). A pass that must be redone (a column that
stops converting late in the file, a row longer than a block, line breaks in values that
the sample did not show) reads the complete spool file again; its errors name the line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import structlog

from flight_lake import columnar_input, csv_schema, heap, spool
from flight_lake.catalog import (
    DATASETS,
    LEASE_SECONDS,
    Catalog,
    DataObject,
    Manifest,
    Mode,
    check_mode,
    check_name,
    data_prefix,
    lease_key,
    new_version_id,
)
from flight_lake.csv_input import CsvInput
from flight_lake.csv_schema import ColumnFallback, CsvPlan, NotAnInteger, RowRecorder, RowTooLong
from flight_lake.errors import (
    Busy,
    Cancelled,
    InvalidInput,
    LakeError,
    NotFound,
    StorageError,
    TooLarge,
    Unavailable,
)
from flight_lake.layout import Layout, check_layout
from flight_lake.layout_writer import collect_staging, layout_writer
from flight_lake.settings import Settings
from flight_lake.spool import Spool
from flight_lake.staging import FilePrefix, StagedFile, Staging, Transaction, check_label
from flight_lake.storage import Storage
from flight_lake.upload_pace import UploadPace

log = structlog.get_logger()

CSV_BLOCK_BYTES = csv_schema.BLOCK_BYTES  # the smallest block a whole pass reads with
BUSY_RETRY_SECONDS = 5  # what a refused upload is told to wait before trying again


class IngestService:
    def __init__(self, storage: Storage, catalog: Catalog, settings: Settings) -> None:
        self.storage = storage
        self.catalog = catalog
        self.settings = settings
        self._slots_lock = threading.Lock()
        self._active = 0
        self._writing: dict[str, int] = {}  # dataset name -> ingests running for it
        self._by_client: dict[str, int] = {}  # client address -> ingests running for it
        self._stopping = threading.Event()
        self.staging = Staging(storage, settings.ingest, self._discard)

    @property
    def active(self) -> int:
        """How many ingests are running now (for /health)."""
        return self._active

    def ingest_csv(self, name: str, mode: Mode, chunks: Iterable[bytes],
                   client: str | None = None, layout: Layout | None = None) -> Manifest:
        with self._slot(name, client), _logged_failure(name, mode):
            layout = self._check_target(name, mode, layout=layout)
            with Spool.receiving(self._upload(chunks), self.settings.ingest.spool_dir) as spooled:
                return self._commit_new_version(
                    name, mode, lambda version: self._file_to_parts(name, mode, spooled,
                                                                    version, layout),
                    lambda: spooled.digest, layout)

    def ingest_arrow(
        self, name: str, mode: Mode, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
        client: str | None = None, layout: Layout | None = None,
    ) -> Manifest:
        with self._slot(name, client), _logged_failure(name, mode):
            _check_arrow_schema(schema)
            layout = self._check_target(name, mode, schema, layout)
            check_layout(layout, schema)
            digest = hashlib.sha256(schema.serialize())
            return self._commit_new_version(
                name, mode, lambda version: self._arrow_to_parts(schema, batches, version,
                                                                 digest, layout),
                lambda: f"sha256:{digest.hexdigest()}", layout)

    # -- many files, one version (staging.py) -----------------------------------------

    def begin(self, name: str, mode: Mode, layout: Layout | None = None) -> Transaction:
        """Open a transaction for ``name`` and ``mode`` (and ``layout``, which every file is
        written in); files are staged into it, then it is committed once."""
        if self._stopping.is_set():
            raise Unavailable("the server is shutting down")
        layout = self._check_target(name, mode, layout=layout)
        fixed = self.catalog.get(name).arrow_schema() if mode == "append" else None
        return self.staging.open(name, mode, layout, fixed)

    def stage(self, transaction_id: str, label: str, chunks: Iterable[Any],
              client: str | None = None, name: str | None = None) -> StagedFile:
        """Upload one file (CSV, Parquet or Arrow IPC) into a transaction; nothing is
        committed. Any failure fails the transaction, its error naming the file. ``name``,
        if given, must be the transaction's dataset."""
        check_label(label)
        transaction = self.staging.get(transaction_id)
        if name is not None and name != transaction.name:
            raise InvalidInput(f"transaction {transaction_id} is for dataset "
                               f"{transaction.name}, not {name}")
        name, mode = transaction.name, transaction.mode
        with self._slot(name, client), _logged_failure(name, mode), \
                transaction.staging(label, _as_lake_error) as target, \
                Spool.receiving(self._upload(chunks), self.settings.ingest.spool_dir) as spooled:
            expected = transaction.expected_schema()
            schema, objects = self._file_to_parts(name, mode, spooled, target,
                                                  transaction.layout, expected)
            staged = transaction.staged(label, target, schema, objects, spooled.digest)
        log.info("file_staged", dataset=name, transaction=transaction_id, file=label,
                 rows=staged.rows, parts=len(objects))
        return staged

    def commit(self, transaction_id: str, files: int | None = None) -> Manifest:
        """Commit every staged file of the transaction as one version (``files``, if given,
        must be how many were staged)."""
        transaction = self.staging.get(transaction_id)
        name, mode = transaction.name, transaction.mode
        with _logged_failure(name, mode):
            schema, objects, digest = transaction.closing(files)
            try:
                same = self._same_content(name, mode, digest, transaction.layout)
                if same is not None:
                    self.staging.abort(transaction, LakeError("the content is unchanged"))
                    return same
                self._check_still_stored(objects)
                manifest = self.catalog.commit(name, mode, schema, objects, digest,
                                               transaction.layout)
            except BaseException as exc:
                if not self._committed(name, transaction.folder):
                    self.staging.abort(transaction, _as_lake_error(exc))
                raise
            finally:
                self.staging.forget(transaction)
        log.info("ingest_done", dataset=name, mode=mode, version=manifest.version,
                 transaction=transaction_id, files=len(transaction.files),
                 rows=sum(o.row_count for o in objects), parts=len(objects))
        return manifest

    def abort(self, transaction_id: str) -> str:
        """Drop a transaction and every object staged in it; returns its id."""
        self.staging.abort(self.staging.get(transaction_id),
                           Cancelled("the client aborted the transaction"))
        return transaction_id

    def shutdown(self) -> None:
        """Refuse new ingests and abandon uploads still streaming (they clean up after
        themselves); ingests already past their upload run to their commit. Open
        transactions are dropped with what they staged."""
        self._stopping.set()
        self.staging.close()

    @contextlib.contextmanager
    def _slot(self, name: str, client: str | None = None) -> Iterator[None]:
        """One of the ingest slots, and (with ``client``, the caller's address) one of
        ``ingest.max_concurrent_ingests_per_client``; ``Busy`` if none is free."""
        limit = self.settings.ingest.max_concurrent_ingests
        per_client = self.settings.ingest.max_concurrent_ingests_per_client
        with self._slots_lock:
            if self._stopping.is_set():
                raise Unavailable("the server is shutting down")
            if self._active >= limit:
                raise Busy(f"{limit} ingests are already running; retry in "
                           f"{BUSY_RETRY_SECONDS} s", retry_after=BUSY_RETRY_SECONDS)
            if client is not None and per_client is not None and \
                    self._by_client.get(client, 0) >= per_client:
                raise Busy(f"{per_client} ingests from {client} are already running "
                           "(ingest.max_concurrent_ingests_per_client); retry in "
                           f"{BUSY_RETRY_SECONDS} s", retry_after=BUSY_RETRY_SECONDS)
            self._active += 1
            self._writing[name] = self._writing.get(name, 0) + 1
            if client is not None:
                self._by_client[client] = self._by_client.get(client, 0) + 1
        try:
            yield
        finally:
            with self._slots_lock:
                self._active -= 1
                if client is not None:
                    self._by_client[client] -= 1
                    if not self._by_client[client]:
                        del self._by_client[client]
                self._writing[name] -= 1
                if not self._writing[name]:
                    del self._writing[name]

    def _same_content(self, name: str, mode: Mode, digest: str,
                      layout: Layout) -> Manifest | None:
        """The current manifest, marked ``unchanged``, if a create/replace brings exactly the
        content it already holds, in the same layout (a retried upload); else ``None``."""
        if mode == "append":
            return None
        try:
            current = self.catalog.get(name)
        except LakeError:
            return None
        if current.content_digest != digest or current.layout != layout:
            return None
        log.info("ingest_unchanged", dataset=name, mode=mode, version=current.version,
                 digest=digest)
        return current.model_copy(update={"unchanged": True})

    def _check_target(self, name: str, mode: Mode, schema: pa.Schema | None = None,
                      layout: Layout | None = None) -> Layout:
        """Name, mode and schema checked against the catalog; the layout to write with."""
        check_name(name)
        check_mode(mode)
        return self.catalog.check_writable(name, mode, schema, layout)

    def collect_spool(self) -> list[str]:
        """Remove spool files and staging folders crashed ingests left (at start-up)."""
        directory = self.settings.ingest.spool_dir
        return [*spool.collect(directory),
                *collect_staging(directory)]

    def _commit_new_version(
        self, name: str, mode: Mode,
        write_parts: Callable[[_Version], tuple[pa.Schema, list[DataObject]]],
        content_digest: Callable[[], str], layout: Layout,
    ) -> Manifest:
        """Write the parts under a fresh version prefix, then commit; on failure remove them.

        ``content_digest()`` is called once the parts are written (an Arrow stream's digest
        is complete only then); the same content as the current version's commits nothing.
        """
        started = time.perf_counter()
        version = _Version(self.storage, name)
        try:
            return self._write_and_commit(name, mode, write_parts, content_digest, version,
                                          started, layout)
        finally:
            version.release()

    def _write_and_commit(self, name: str, mode: Mode,
                          write_parts: Callable[[_Version], tuple[pa.Schema, list[DataObject]]],
                          content_digest: Callable[[], str], version: _Version,
                          started: float, layout: Layout) -> Manifest:
        try:
            schema, objects = write_parts(version)
            digest = content_digest()
            same = self._same_content(name, mode, digest, layout)
            if same is not None:
                self._discard(name, version.prefix)
                return same
            self._check_still_stored(objects)
            manifest = self.catalog.commit(name, mode, schema, objects, digest, layout)
        except BaseException as exc:
            if not self._committed(name, version.prefix):
                self._discard(name, version.prefix)
            error = _as_lake_error(exc)
            if error is exc or not isinstance(exc, Exception):
                raise
            raise error from exc
        log.info("ingest_done", dataset=name, mode=mode, version=manifest.version,
                 rows=sum(o.row_count for o in objects), bytes=version.received,
                 parquet_bytes=sum(o.size for o in objects), parts=len(objects),
                 seconds=round(time.perf_counter() - started, 3))
        return manifest

    def _check_still_stored(self, objects: list[DataObject]) -> None:
        """Never commit objects that no longer exist (another server's start-up collection
        may have removed them): each must still be there, at the size written."""
        for data_object in objects:
            try:
                size = self.storage.size(data_object.key)
            except NotFound:
                size = None
            if size != data_object.size:
                raise StorageError(
                    f"object {data_object.key} of this ingest is gone or changed before its "
                    "commit (a clean-up by another server?); nothing was committed, retry")

    def _discard(self, name: str, prefix: str) -> None:
        """Delete an uncommitted version's objects, and the dataset's folder if nothing else
        is in it (a local folder outlives its last file; an object store has no folders)."""
        with contextlib.suppress(LakeError):
            self.storage.delete_prefix(prefix)
            with self._slots_lock:
                alone = self._writing.get(name, 0) <= 1
            folder = f"{DATASETS}/{name}"
            if alone and not self.storage.list(folder):
                self.storage.delete_prefix(folder)

    def _committed(self, name: str, prefix: str) -> bool:
        """Whether a manifest already refers to ``prefix`` (the commit went through and a
        catalog listener failed after it): then its objects must stay."""
        try:
            objects = self.catalog.get(name).objects
        except LakeError:
            return False
        return any(o.key.startswith(prefix + "/") for o in objects)

    def _upload(self, chunks: Iterable[Any]) -> CsvInput:
        """The client's chunks as an upload: what it is (CSV, Parquet or Arrow IPC),
        decompressed, counted, digested."""
        return CsvInput(_received(chunks, self._stopping, UploadPace(self.settings.ingest)),
                        self.settings.ingest.max_upload_bytes, columnar=True)

    def _file_to_parts(
        self, name: str, mode: Mode, spooled: Spool, version: _Version | FilePrefix,
        layout: Layout, expected: pa.Schema | None = None,
    ) -> tuple[pa.Schema, list[DataObject]]:
        """The upload as parts under ``version.prefix``, read as what it is; ``expected``:
        the schema a transaction's earlier file fixed."""
        spooled.reader().read(1)  # its first bytes are in: the upload knows what it is
        if spooled.upload.format == "csv":
            return self._csv_to_parts(name, mode, spooled, version, layout, expected)
        spooled.complete()  # Parquet and Arrow IPC files are read whole, from their end
        version.received, path = spooled.size, spooled.path

        def check(schema: pa.Schema) -> None:
            _check_arrow_schema(schema)
            self.catalog.check_writable(name, mode, schema, layout)
            check_layout(layout, schema)

        if spooled.upload.format == "parquet":
            return columnar_input.parquet_to_parts(self.storage, version.prefix, path,
                                                   expected, check, self.settings.ingest,
                                                   layout)
        return columnar_input.ipc_to_parts(self.storage, version.prefix, path, expected,
                                           check, self.settings.ingest, layout)

    def _csv_to_parts(
        self, name: str, mode: Mode, spooled: Spool, version: _Version | FilePrefix,
        layout: Layout, expected: pa.Schema | None = None,
    ) -> tuple[pa.Schema, list[DataObject]]:
        recorder = RowRecorder()
        try:
            # only the head is parsed: Arrow may read no further ahead than a few blocks
            plan = csv_schema.infer(functools.partial(spooled.reader, 0),
                                    self.settings.ingest.sample_bytes, recorder)
        except Exception as exc:
            spooled.complete()  # the upload's own failure comes first
            if isinstance(exc, (pa.ArrowInvalid, UnicodeDecodeError)):
                raise csv_schema.input_error(exc, spooled.path, recorder) from exc
            raise
        heap.release()  # the sample's readers (a converter per column) are gone
        if expected is None and mode == "append":
            expected = self.catalog.get(name).arrow_schema()
        if expected is not None:
            plan = csv_schema.fixed_plan(plan, expected)
        _log_defaulted(name, plan.defaulted)
        self.catalog.check_writable(name, mode, plan.schema, layout)
        check_layout(layout, plan.schema)
        source: csv_schema.Source = spooled.reader  # the first pass reads as it arrives
        while True:  # each round reads more slowly or makes a column text, so it ends
            try:
                objects = self._csv_pass(name, source, plan, version, spooled, layout)
                spooled.complete()
                version.received = spooled.size
                return plan.schema, objects
            except ColumnFallback as fallback:
                plan = plan.fall_back(fallback.columns)
                _log_defaulted(name, plan.defaulted[-len(fallback.columns):])
            except RowTooLong:
                plan = replace(plan, block_bytes=csv_schema.grow_block(
                    max(plan.block_bytes, CSV_BLOCK_BYTES)))
            except _LineBreaksInValues:
                log.info("csv_values_span_lines", dataset=name)
                plan = replace(plan, multiline=True)
            spooled.complete()
            source = spooled.reader  # the complete file now: its reads no longer wait
            version.renew()

    def _csv_pass(
        self, name: str, source: csv_schema.Source, plan: CsvPlan, version: _Version | FilePrefix,
        spooled: Spool, layout: Layout,
    ) -> list[DataObject]:
        """Read the whole upload with ``plan``; ``ColumnFallback`` if a column stops
        converting, ``_LineBreaksInValues`` if the plain chunker lost its way."""
        recorder = RowRecorder()
        writer = layout_writer(self.storage, version.prefix, plan.schema, self.settings.ingest,
                               layout)
        try:
            with source() as handle, pacsv.open_csv(
                # One parsing thread: the Parquet writer thread has the other core (measured
                # faster and cheaper than Arrow's threaded read-ahead on 2 cores).
                handle, read_options=csv_schema.read_options(
                    max(plan.block_bytes, CSV_BLOCK_BYTES), plan.names, threads=False),
                parse_options=csv_schema.parse_options(recorder, plan.multiline),
                convert_options=csv_schema.convert_options(plan.read_types()),
            ) as reader:
                last, rows = None, 0
                for batch in reader:
                    try:
                        last = plan.finish(batch)
                    except NotAnInteger as refused:
                        spooled.complete()
                        raise _not_an_integer(refused, spooled.path, rows + refused.row,
                                              name) from None
                    rows += batch.num_rows
                    writer.write(last)
            spooled.complete()
            csv_schema.check_quotes_closed(spooled.path, last)
            return writer.close()
        except pa.ArrowInvalid as exc:
            writer.abort()
            spooled.complete()  # the upload's own failure (too large, broken off) comes first
            if not plan.multiline and csv_schema.conversion_failure(exc) is None:
                # Read in order, a value's conversion fails before any later cut can matter;
                # anything else may be the plain chunker cutting inside a quoted value.
                raise _LineBreaksInValues() from exc
            raise csv_schema.failure_meaning(exc, spooled.path, recorder, plan, name) from exc
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, Exception) and spooled.error is not None:
                raise spooled.error from exc  # e.g. Arrow's wrapping of the upload's failure
            raise

    def _arrow_to_parts(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], version: _Version,
        digest: Any, layout: Layout,
    ) -> tuple[pa.Schema, list[DataObject]]:
        limit = self.settings.ingest.max_upload_bytes
        writer = layout_writer(self.storage, version.prefix, schema, self.settings.ingest,
                               layout)
        try:
            for batch in _received(batches, self._stopping, UploadPace(self.settings.ingest)):
                if not isinstance(batch, pa.RecordBatch) or not batch.schema.equals(schema):
                    raise InvalidInput("every record batch must have the stream's schema")
                version.received += batch.nbytes
                if version.received > limit:
                    raise TooLarge(f"upload exceeds ingest.max_upload_bytes ({limit} bytes)")
                digest.update(batch.serialize())
                writer.write(batch)
            return schema, writer.close()
        except BaseException:
            writer.abort()
            raise


class _LineBreaksInValues(Exception):
    """The plain chunker (no ``newlines_in_values``) lost its way: read again with it."""


class _Version:
    """The version prefix an ingest writes under; ``renew`` discards it for a fresh one.

    While the ingest runs, a lease object in the folder is rewritten every third of
    ``LEASE_SECONDS`` by a small thread, so no server's collection removes the folder
    (``Catalog.collect_garbage``); ``release`` stops it and removes the lease.
    """

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage, self.name = storage, name
        self.prefix = data_prefix(name, new_version_id())
        self.received = 0  # bytes of upload, for the log
        self._released = threading.Event()
        self._write_lease()
        self._lease = threading.Thread(target=self._keep_lease, name="ingest-lease",
                                       daemon=True)
        self._lease.start()

    def renew(self) -> None:
        self.storage.delete_prefix(self.prefix)
        self.prefix = data_prefix(self.name, new_version_id())
        self._write_lease()

    def release(self) -> None:
        self._released.set()
        self._lease.join(timeout=5)
        with contextlib.suppress(LakeError):
            self.storage.delete(lease_key(self.prefix))

    def _write_lease(self) -> None:
        with contextlib.suppress(LakeError):  # a missed renewal is retried on the next beat
            self.storage.put(lease_key(self.prefix), f"{time.time():.3f}".encode())

    def _keep_lease(self) -> None:
        while not self._released.wait(LEASE_SECONDS / 3):
            self._write_lease()


def _received(items: Iterable[Any], stopping: threading.Event,
              pace: UploadPace | None = None) -> Iterator[Any]:
    """Iterate the client's stream; its failures (a dropped client) become ``InvalidInput``,
    a server shutdown abandons it with ``Unavailable``, a client too slow for ``pace`` gets
    ``QueryTimeout``."""
    iterator = iter(items)
    while True:
        if stopping.is_set():
            raise Unavailable("the server is shutting down; the upload was abandoned")
        try:
            item = next(iterator)
        except StopIteration:
            return
        except LakeError:
            raise
        except Exception as exc:
            raise InvalidInput(f"the upload stream broke off: {exc}") from exc
        if pace is not None:
            pace.observe(_size(item))
        yield item


def _size(item: Any) -> int:
    if isinstance(item, pa.RecordBatch):
        return int(item.nbytes)
    try:
        return memoryview(item).nbytes
    except TypeError:
        return 0


def _not_an_integer(refused: NotAnInteger, path: str, row: int, name: str) -> InvalidInput:
    line = csv_schema.line_of_record(path, row)
    return InvalidInput(
        f"line {line}: column {refused.column!r} of {name} is int64, and {refused.value!r} "
        f"is not a plain integer ({refused.problem}; a new dataset would read such a column "
        "as text)", line=line)


@contextlib.contextmanager
def _logged_failure(name: str, mode: Mode) -> Iterator[None]:
    """One log event for an ingest that did not commit: ``ingest_cancelled`` when the client
    went away (not a fault), ``ingest_failed`` with the error code otherwise."""
    try:
        yield
    except BaseException as exc:
        error = _as_lake_error(exc)
        if isinstance(error, Cancelled):
            log.info("ingest_cancelled", dataset=name, mode=mode, error=error.code,
                     detail=error.detail)
        else:
            log.warning("ingest_failed", dataset=name, mode=mode, error=error.code,
                        detail=error.detail, line=error.line)
        raise


def _log_defaulted(name: str, columns: Iterable[csv_schema.Defaulted]) -> None:
    for column in columns:
        log.info("column_defaulted_to_string", dataset=name, column=column.column,
                 reason=column.reason)


def _check_arrow_schema(schema: pa.Schema) -> None:
    """Columns need unique, non-empty names (ignoring case, as SQL does) and storable types."""
    if not isinstance(schema, pa.Schema) or len(schema) == 0:
        raise InvalidInput("an Arrow upload needs a schema with at least one column")
    seen: set[str] = set()
    for field in schema:
        if not field.name.strip():
            raise InvalidInput("every column needs a non-empty name")
        if field.name.lower() in seen:
            raise InvalidInput(f"duplicate column name {field.name!r}")
        seen.add(field.name.lower())
    try:
        pq.ParquetWriter(pa.BufferOutputStream(), schema).close()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"Parquet cannot store this schema: {exc}") from exc


def _as_lake_error(exc: BaseException) -> LakeError:
    if isinstance(exc, LakeError):
        return exc
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)):
        return InvalidInput(f"invalid data: {exc}")
    if isinstance(exc, OSError):
        return StorageError(f"writing Parquet failed: {exc}")
    return LakeError(f"ingest failed: {exc!r}")
