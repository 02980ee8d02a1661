"""Query cache: the datasets queries read, copied into compressed DuckDB memory, in a budget.

A committed version's view first reads its Parquet objects (``query.py``). Once a query
names a dataset, this cache copies its current version on one background thread into a
compressed in-memory database of its own (``ATTACH ':memory:' (COMPRESS)``) and asks the
engine to point the view at that table; warm queries then skip Parquet decoding
(docs/adr/0005-query-cache.md). The copy goes one DuckDB row group at a time, each
compressed by a ``CHECKPOINT`` before the next, so a load never holds more than one chunk
uncompressed. Only that thread attaches and detaches cache databases, so the change in the
memory DuckDB reports for in-memory tables during a load is that copy's size.

Policy (first come, first served, within the lake's one cache budget, ``[cache] max_bytes``,
shared with decoded Arrow objects: :mod:`flight_lake.cache_budget`):

- a dataset is loaded once a query has named it; after that each new version is loaded
  right after its commit. Datasets that are written but never read cost nothing;
- a new version frees its old copy first (the view has already moved to the new Parquet
  objects), then competes for the budget like any other load;
- a load starts if its Parquet size (a close guess of its compressed size) can be reserved
  from the budget (decoded Arrow objects may be evicted to make room), and stops as soon as
  the copy, measured after each chunk, passes what it could reserve: that version stays on
  Parquet until its next commit;
- the copy is swapped in only if its version is still the view's: a copy of a version
  superseded meanwhile is abandoned, never served.

The copies' share is at most half of DuckDB's ``memory_limit`` so queries keep the rest;
a budget of 0 turns the cache off.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import structlog

from flight_lake.cache_budget import CacheBudget
from flight_lake.catalog import Manifest

log = structlog.get_logger()

CACHE_PREFIX = "_lake_cache_"

# Rows copied per statement (one DuckDB row group): bounds what a load holds uncompressed.
CHUNK_ROWS = 122_880
# A string column with more distinct values than this (in a copy's first chunk) is kept
# uncompressed: see _create_table.
DICTIONARY_VALUES = 256
_UNITS = {"bytes": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15}
_HUMAN_BYTES = re.compile(r"^\s*(?P<number>[0-9.]+)\s*(?P<unit>[A-Za-z]+)\s*$")
_WORDS = re.compile(r"[a-z_][a-z0-9_]*")

# Called with the version and its copy's SQL name; True if the view now reads the copy.
Swap = Callable[[Manifest, str], bool]


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parquet_source(urls: list[str], options: str = "") -> str:
    """The one SELECT both a dataset's Parquet view and its cached copy are made from
    (``options``: more ``read_parquet`` arguments, e.g. the view's Hive partitioning)."""
    return f"SELECT * FROM read_parquet([{', '.join(sql_literal(url) for url in urls)}]{options})"


@dataclass
class _Copy:
    version: int
    database: str
    size: int


@dataclass
class _Job:
    manifest: Manifest
    urls: list[str]


class TableCache:
    """Copies read datasets into memory on one worker thread; see the module docstring."""

    def __init__(self, database: duckdb.DuckDBPyConnection, budget: CacheBudget,
                 swap: Swap) -> None:
        self._shared = budget
        self.budget = _budget(database, budget.max_bytes)  # the DuckDB copies' share
        self._reserved_now = 0  # reserved for the load in progress (worker thread only)
        self._swap = swap
        self._database = database
        # Every field below is guarded by _wake; only the worker thread changes _copies.
        self._copies: dict[str, _Copy] = {}
        self._latest: dict[str, _Job] = {}  # every dataset's current version
        self._wanted: set[str] = set()  # datasets a query has named
        self._queue: OrderedDict[str, _Job] = OrderedDict()
        self._settled: dict[str, tuple[int, bool]] = {}  # dataset -> (version, cached)
        self._wake = threading.Condition()
        self._stopped = False
        self._serial = 0
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._thread: threading.Thread | None = None
        self._requested = budget.max_bytes

    def start(self) -> None:
        """Start the worker thread (none when the budget is 0)."""
        if self.budget > 0 and self._thread is None:
            self._cursor = self._database.cursor()
            thread = threading.Thread(target=self._run, name="query-cache", daemon=True)
            with self._wake:
                self._thread = thread
            thread.start()
        log.info("query_cache_ready", budget=self.budget, requested=self._requested)

    @property
    def used(self) -> int:
        """Bytes held by cached copies now (a snapshot)."""
        with self._wake:
            return sum(copy.size for copy in self._copies.values())

    def status(self) -> dict[str, Any]:
        """The budget, the bytes in use and each cached dataset's version and size (a snapshot)."""
        with self._wake:
            copies = dict(self._copies)  # one copy, so the sum matches the datasets listed
        return {
            "budget_bytes": self.budget,
            "used_bytes": sum(copy.size for copy in copies.values()),
            "datasets": {name: {"version": copies[name].version, "bytes": copies[name].size}
                         for name in sorted(copies)},
        }

    def offer(self, manifest: Manifest, urls: list[str]) -> None:
        """A new version's view now reads ``urls``: load it now if the dataset is read."""
        if self._thread is None:
            return
        with self._wake:
            self._latest[manifest.name] = _Job(manifest, urls)
            if manifest.name in self._wanted:
                self._enqueue(self._latest[manifest.name])

    def note_reads(self, sql: str) -> None:
        """Mark the datasets ``sql`` may name as read (any word that is a dataset's name)."""
        if self._thread is None:
            return
        for word in _WORDS.findall(sql.lower()):
            if word in self._latest and word not in self._wanted:
                self.want(word)

    def want(self, name: str) -> None:
        with self._wake:
            self._wanted.add(name)
            job = self._latest.get(name)
            if job is not None and job.manifest.version > self._settled.get(name, (0, False))[0]:
                self._enqueue(job)

    def wait(self, name: str, version: int, timeout: float) -> bool:
        """Wait until ``version`` of ``name`` is settled; True if it is served from memory."""
        if self._thread is None:
            return False
        with self._wake:
            self._wake.wait_for(
                lambda: self._stopped or self._settled.get(name, (0, False))[0] >= version,
                timeout,
            )
            return not self._stopped and self._settled.get(name) == (version, True)

    def close(self) -> None:
        """Stop the worker, interrupting a load in progress."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._cursor is not None:
            with contextlib.suppress(duckdb.Error):
                self._cursor.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _enqueue(self, job: _Job) -> None:  # under self._wake
        queued = self._queue.get(job.manifest.name)
        if queued is None or queued.manifest.version < job.manifest.version:
            self._queue[job.manifest.name] = job
            self._wake.notify_all()

    # -- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopped or bool(self._queue))
                if self._stopped:
                    return
                superseded = [name for name, job in self._queue.items()
                              if name in self._copies
                              and self._copies[name].version < job.manifest.version]
                _, job = self._queue.popitem(last=False)
            for name in superseded:  # free their share before anything new is loaded
                self._drop(name)
            try:
                cached = self._load(job)
            except Exception as exc:  # a failed load leaves the dataset on Parquet
                cached = False
                if not self._stopped:
                    log.warning("query_cache_failed", dataset=job.manifest.name,
                                version=job.manifest.version, error=str(exc))
            self._settle(job.manifest, cached)

    def _load(self, job: _Job) -> bool:
        manifest = job.manifest
        name, version = manifest.name, manifest.version
        with self._wake:
            current = self._copies.get(name)
        if current is not None and current.version >= version:
            return current.version == version
        if current is not None:
            self._drop(name)
        if manifest.row_count == 0:
            return False  # nothing to gain
        reserved = manifest.size_bytes  # a close guess of the compressed size
        if not self._reserve(manifest, reserved, 0):
            return False
        self._reserved_now = reserved
        try:
            return self._copy(job)
        except BaseException:
            self._release_reserved(name)
            raise

    def _reserve(self, manifest: Manifest, size: int, loaded: int) -> bool:
        """Reserve ``size`` more bytes for a copy (within the DuckDB share and the budget)."""
        used = self.used
        if used + loaded + size <= self.budget and self._shared.reserve(
                manifest.name, "duckdb", size):
            return True
        progress = {"loaded_bytes": loaded + size} if loaded else {}  # refused mid-copy
        log.info("query_cache_over_budget", dataset=manifest.name, version=manifest.version,
                 estimated_bytes=manifest.size_bytes, used_bytes=used, budget=self.budget,
                 cache_used_bytes=self._shared.used, cache_max_bytes=self._shared.max_bytes,
                 **progress)
        return False

    def _copy(self, job: _Job) -> bool:
        """Copy ``job``'s version chunk by chunk; ``_reserved_now`` bytes are reserved."""
        manifest = job.manifest
        name, version = manifest.name, manifest.version
        self._serial += 1
        database = sql_identifier(f"{CACHE_PREFIX}{self._serial}")
        table = f"{database}.main.{sql_identifier(name)}"
        cursor = self._worker_cursor()
        started = time.perf_counter()
        before = _table_memory(cursor)
        cursor.execute(f"ATTACH ':memory:' AS {database} (COMPRESS)")
        try:
            _create_table(cursor, table, job)
            size = 0
            for chunk in _chunks(job):
                if self._superseded(manifest):
                    break
                cursor.execute(f"INSERT INTO {table} {chunk}")
                cursor.execute(f"CHECKPOINT {database}")  # compresses; nothing reads it yet
                size = max(_table_memory(cursor) - before, 0)
                if size > self._reserved_now:
                    if not self._reserve(manifest, size - self._reserved_now,
                                         self._reserved_now):
                        self._detach(database)
                        self._release_reserved(name)
                        return False
                    self._reserved_now = size
            seconds = round(time.perf_counter() - started, 3)
            swapped = not self._superseded(manifest) and self._swap(manifest, table)
        except BaseException:
            self._detach(database)
            raise
        if not swapped:
            self._detach(database)
            self._release_reserved(name)
            if not self._stopped:
                log.info("query_cache_stale", dataset=name, version=version, seconds=seconds)
            return False
        self._shared.release(name, "duckdb", self._reserved_now - size)  # the guess's excess
        self._reserved_now = 0
        with self._wake:
            self._copies[name] = _Copy(version, database, size)
        log.info("query_cache_loaded", dataset=name, version=version, bytes=size,
                 parquet_bytes=manifest.size_bytes, used_bytes=self.used,
                 budget=self.budget, seconds=seconds)
        return True

    def _release_reserved(self, name: str) -> None:
        self._shared.release(name, "duckdb", self._reserved_now)
        self._reserved_now = 0

    def _superseded(self, manifest: Manifest) -> bool:
        """A newer version of the dataset waits in the queue (its view has moved on)."""
        with self._wake:
            queued = self._queue.get(manifest.name)
            return self._stopped or (queued is not None
                                     and queued.manifest.version > manifest.version)

    def _drop(self, name: str) -> None:
        with self._wake:
            copy = self._copies.pop(name)
        self._detach(copy.database)
        self._shared.release(name, "duckdb", copy.size)
        log.info("query_cache_dropped", dataset=name, version=copy.version, bytes=copy.size)

    def _detach(self, database: str) -> None:
        """Queries already reading the copy finish on it; DuckDB frees it after them."""
        with contextlib.suppress(duckdb.Error):  # closed at shutdown
            self._worker_cursor().execute(f"DETACH DATABASE IF EXISTS {database}")

    def _settle(self, manifest: Manifest, cached: bool) -> None:
        with self._wake:
            settled = self._settled.get(manifest.name, (0, False))
            if manifest.version >= settled[0]:
                self._settled[manifest.name] = (manifest.version, cached)
            self._wake.notify_all()

    def _worker_cursor(self) -> duckdb.DuckDBPyConnection:
        assert self._cursor is not None
        return self._cursor


def _chunks(job: _Job) -> Iterator[str]:
    """SELECTs of at most ``CHUNK_ROWS`` rows each, in the objects' order.

    DuckDB skips the Parquet row groups outside each ``file_row_number`` range, so a load
    decodes every row once, and holds one chunk uncompressed at a time.
    """
    ranged = "file_row_number" not in job.manifest.arrow_schema().names
    for url, data_object in zip(job.urls, job.manifest.objects, strict=True):
        if not ranged:
            yield parquet_source([url])
            continue
        source = f"read_parquet({sql_literal(url)}, file_row_number = true)"
        for first in range(0, data_object.row_count, CHUNK_ROWS):
            yield (f"SELECT * EXCLUDE (file_row_number) FROM {source} "
                   f"WHERE file_row_number >= {first} AND file_row_number < {first + CHUNK_ROWS}")


def _create_table(cursor: duckdb.DuckDBPyConnection, table: str, job: _Job) -> None:
    """The copy's empty table: compressed, except string columns of many distinct values.

    DuckDB's dictionary+FSST compression makes a filter or GROUP BY on a string column of
    few values several times faster than plain storage, but decoding FSST strings of many
    distinct values (e-mail addresses, zip codes, free text) makes reading whole rows — a
    point lookup, a top-N — about twice as slow as plain storage. A string column with more
    than ``DICTIONARY_VALUES`` distinct values in the first chunk is stored uncompressed
    (docs/PERFORMANCE.md has the measurements).
    """
    source = parquet_source(job.urls)
    columns = cursor.execute(f"DESCRIBE {source}").fetchall()
    strings = [str(column[0]) for column in columns if str(column[1]) == "VARCHAR"]
    plain: set[str] = set()
    if strings:
        first = next(_chunks(job))
        counts = ", ".join(f"approx_count_distinct({sql_identifier(name)})" for name in strings)
        row = cursor.execute(f"SELECT {counts} FROM ({first})").fetchone() or ()
        plain = {name for name, count in zip(strings, row, strict=True)
                 if int(count or 0) > DICTIONARY_VALUES}
    if not plain:
        cursor.execute(f"CREATE TABLE {table} AS {source} LIMIT 0")
        return
    definitions = ", ".join(
        f"{sql_identifier(str(name))} {column_type}"
        + (" USING COMPRESSION uncompressed" if name in plain else "")
        for name, column_type, *_ in columns)
    try:
        cursor.execute(f"CREATE TABLE {table} ({definitions})")
    except duckdb.Error:  # a type DuckDB cannot spell back: the automatic choice, then
        cursor.execute(f"CREATE TABLE {table} AS {source} LIMIT 0")


def _table_memory(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.execute(
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
        "WHERE tag = 'IN_MEMORY_TABLE'"
    ).fetchone()
    return int(row[0]) if row else 0


def _budget(database: duckdb.DuckDBPyConnection, max_bytes: int) -> int:
    """``max_bytes``, at most half of DuckDB's memory limit (copies count against it)."""
    if max_bytes <= 0:
        return 0
    row = database.execute("SELECT current_setting('memory_limit')").fetchone()
    limit = parse_bytes(str(row[0])) if row else None
    return max_bytes if limit is None else min(max_bytes, limit // 2)


def parse_bytes(text: str) -> int | None:
    """DuckDB's human-readable sizes (``'244.1 MiB'``) in bytes; None if not one."""
    match = _HUMAN_BYTES.match(text)
    if not match or match.group("unit").lower() not in _UNITS:
        return None
    return int(float(match.group("number")) * _UNITS[match.group("unit").lower()])
