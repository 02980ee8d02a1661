"""Query: read-only SQL over every dataset through DuckDB, streamed as Arrow batches.

One in-memory DuckDB database holds a view per dataset, named after it, over the Parquet
objects of its current manifest (with Hive partitioning for a partitioned dataset, so a
filter on a partition column skips whole folders). Views are created at start and
refreshed one at a time through ``catalog.subscribe`` when a dataset changes — never
re-created per request. Once
queries read a dataset, :mod:`flight_lake.query_cache` copies each of its versions into
memory in the background, within the lake's ``[cache] max_bytes``, and moves the view there.
Each query runs on its own cursor (a connection to the same database), so queries run
concurrently; the watchdog thread of :mod:`flight_lake.watchdog` interrupts any query still
running after ``query.timeout_seconds``.

Read-only is enforced twice: DuckDB is hardened once views can be created (external
access only under ``datasets/``, no extension autoload, configuration locked), and
:mod:`flight_lake.sql_guard` admits one SELECT that names no file, URL or system function.
The storage backend sets the database up to read its objects
(S3: the ``httpfs`` extension, docs/adr/0002-duckdb-reads-s3.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import duckdb
import pyarrow as pa
import structlog

from flight_lake.cache_budget import CacheBudget
from flight_lake.catalog import DATASETS, Catalog, Manifest
from flight_lake.database import open_database
from flight_lake.errors import (
    InvalidInput,
    NotFound,
    StorageError,
    TooLarge,
    Unavailable,
)
from flight_lake.layout import view_options
from flight_lake.memory_guard import MemoryGuard, physical_memory
from flight_lake.query_cache import TableCache, parquet_source, parse_bytes
from flight_lake.query_cache import sql_identifier as _identifier
from flight_lake.query_cache import sql_literal as _literal
from flight_lake.result import Batches
from flight_lake.settings import QuerySettings, Settings
from flight_lake.sql_guard import SqlGuard, Statement
from flight_lake.storage import Storage
from flight_lake.translator import translate
from flight_lake.watchdog import Deadline, Watchdog

log = structlog.get_logger()

_RETRY_PENDING_SECONDS = 1.0
_SCHEMAS_KEPT = 1024  # result schemas cached by SQL digest


class QueryEngine:
    """Answers SQL over the catalog's datasets; thread-safe, one cursor per query.

    Built without side effects; ``start()`` subscribes to the catalog, creates the views and
    starts the watchdog and the table cache; ``close()`` stops them. Lock order (never take
    an earlier one while holding a later one): ``_ddl_lock`` (views, ``_versions``,
    ``_pending``, ``_generation``) → ``TableCache._wake`` → ``Watchdog._wake``;
    ``_schemas_lock`` and the guard's lock are taken alone. The table cache calls
    ``_serve_from_table`` from its worker without holding its own lock.
    """

    def __init__(self, storage: Storage, catalog: Catalog, settings: Settings,
                 budget: CacheBudget | None = None) -> None:
        self.storage = storage
        self.catalog = catalog
        self.settings = settings
        self._timeout = settings.query.timeout_seconds
        self._batch_rows = settings.query.batch_rows
        self._max_sql_bytes = settings.query.max_sql_bytes
        self._database = _open_database(storage, settings.query)
        self._ddl = self._database.cursor()  # view DDL only, under _ddl_lock
        self._ddl_lock = threading.Lock()
        self._versions: dict[str, int] = {}  # dataset -> manifest version its view shows
        self._pending: dict[str, Manifest] = {}  # refreshes that failed, retried later
        self._pending_tried = 0.0
        self._generation = 0  # bumped whenever a view changes: cached schemas go stale
        self._schemas: OrderedDict[bytes, tuple[int, pa.Schema]] = OrderedDict()
        self._schemas_lock = threading.Lock()
        self._guard = SqlGuard()
        self._watchdog = Watchdog()
        self.memory = MemoryGuard(self._watchdog, _memory_budget(self._database))
        self._started = False
        self._closed = False
        budget = budget if budget is not None else CacheBudget(settings.cache.max_bytes)
        self._cache = TableCache(self._database, budget, self._serve_from_table)

    def start(self) -> QueryEngine:
        """Create the views of every dataset, follow commits, start the background threads."""
        with self._ddl_lock:
            if self._started:
                return self
            self._started = True
        self._watchdog.start()
        self.memory.start()
        self._cache.start()
        self.catalog.subscribe(self._on_commit)
        for manifest in self.catalog.list():
            self._on_commit(manifest)
        log.info("query_engine_ready", views=len(self._versions), backend=self.storage.backend)
        return self

    def __enter__(self) -> QueryEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------

    def statement(self, sql: str, deadline: Deadline | None = None) -> Statement:
        """The SQL guard's verdict on ``sql`` (cached by digest): the one statement to run.

        ``TooLarge`` past ``query.max_sql_bytes``, before any parsing; the parse runs under
        ``deadline`` when given; ``NotFound`` for a table that is not a dataset.
        """
        size = len(sql.encode("utf-8", "surrogatepass")) if isinstance(sql, str) else 0
        if size > self._max_sql_bytes:
            raise TooLarge(f"the SQL text is {size} bytes, over query.max_sql_bytes "
                           f"({self._max_sql_bytes})")
        watch = None
        if deadline is not None:
            def watch(cursor: duckdb.DuckDBPyConnection) -> None:
                self._watchdog.watch(deadline, cursor)
        try:
            statement = self._guard.check(sql, watch)
        except duckdb.Error as exc:  # interrupted at the deadline
            raise translate(exc, deadline) from exc
        for table in sorted(statement.tables):
            if table not in self._versions:
                raise NotFound(f"unknown dataset: {table}")
        return statement

    def schema(self, sql: str, statement: Statement | None = None) -> pa.Schema:
        """The result schema of ``sql``, from a bound plan with ``LIMIT 0``.

        Cached by the SQL's digest until a view changes (a commit, a copy swapped in).
        """
        with self._ddl_lock:
            generation = self._generation
        deadline = Deadline.after(self._timeout)
        try:
            if statement is None:
                statement = self.statement(sql, deadline)
        except BaseException:
            deadline.finish()
            raise
        digest = statement.digest
        with self._schemas_lock:
            known = self._schemas.get(digest)
            if known is not None and known[0] == generation:
                self._schemas.move_to_end(digest)
                deadline.finish()
                return known[1]
        cursor = self._cursor()
        try:
            self._cache.note_reads(statement.text)
            self._watchdog.watch(deadline, cursor)
            try:
                schema = cursor.sql(statement.text).limit(0).to_arrow_table().schema
            except duckdb.Error as exc:
                exc = _with_position(cursor, statement.text, exc)
                raise translate(exc, deadline, sql=statement.text,
                                datasets=self._versions) from exc
            finally:
                deadline.finish()
        finally:
            cursor.close()
        with self._schemas_lock:
            self._schemas[digest] = (generation, schema)
            while len(self._schemas) > _SCHEMAS_KEPT:
                self._schemas.popitem(last=False)
        return schema

    def execute(self, sql: str) -> pa.RecordBatchReader:
        """Start ``sql`` and return a reader that streams its result batch by batch.

        The reader raises ``LakeError``s; ``QueryTimeout`` once the query (including
        streaming) has run for ``query.timeout_seconds``.
        """
        schema, batches = self.stream(sql)
        return pa.RecordBatchReader.from_batches(schema, batches)

    def stream(self, sql: str, deadline: Deadline | None = None,
               statement: Statement | None = None) -> tuple[pa.Schema, Batches]:
        """Start ``sql``: its schema and a generator of its batches (close it when done).

        The batches raise ``LakeError``s: ``QueryTimeout`` once the query (including
        streaming) has run past ``deadline`` (default: ``query.timeout_seconds`` from now),
        ``Cancelled`` once the deadline is interrupted on request.
        """
        if deadline is None:
            deadline = Deadline.after(self._timeout)
        if statement is None:
            statement = self.statement(sql, deadline)
        cursor = self._cursor()
        try:
            self._cache.note_reads(statement.text)
            self._watchdog.watch(deadline, cursor)
            try:
                deadline.check()
                reader = cursor.execute(statement.text).to_arrow_reader(self._batch_rows)
            except duckdb.Error as exc:
                raise translate(exc, deadline, sql=statement.text,
                                datasets=self._versions) from exc
        except BaseException:
            deadline.finish()
            cursor.close()
            raise
        return reader.schema, _stream(cursor, reader, deadline)

    def expire(self, deadline: Deadline) -> None:
        """End ``deadline``'s read at its time even while nothing runs (``Watchdog.expire``)."""
        self._watchdog.expire(deadline)

    def cancel(self, deadline: Deadline) -> None:
        """Stop the read under ``deadline`` now (its batches raise ``Cancelled``)."""
        self._watchdog.cancel(deadline)

    def wait_cached(self, name: str, timeout: float = 30.0) -> bool:
        """Ask for ``name`` to be cached, as a query naming it does, and wait for the outcome.

        True once its current version is served from memory; False if it stays on Parquet
        (over the budget, no rows, cache off) or on timeout.
        """
        with self._ddl_lock:
            version = self._versions.get(name)
        if version is None:
            raise NotFound(f"unknown dataset: {name}")
        self._cache.want(name)
        return self._cache.wait(name, version, timeout)

    def cache_status(self) -> dict[str, Any]:
        """The in-memory cache at a glance, for ``health``: a JSON-ready snapshot.

        ``{"budget_bytes": …, "used_bytes": …, "datasets": {name: {"version": …,
        "bytes": …}}}``; ``datasets`` lists those served from memory now (the others read
        Parquet), and a budget of 0 means the cache is off.
        """
        return self._cache.status()

    def close(self) -> None:
        """Refuse new queries (``Unavailable``); streams already started run to their end."""
        with self._ddl_lock:
            if self._closed:
                return
            self._closed = True
        self._cache.close()
        self.memory.stop()
        self._watchdog.stop()
        self._database.close()
        self._guard.close()
        log.info("query_engine_closed")

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._ddl_lock:
            if self._closed or not self._started:
                raise Unavailable("the query engine is not running")
            retry = (list(self._pending.values()) if self._pending
                     and time.monotonic() - self._pending_tried > _RETRY_PENDING_SECONDS
                     else [])
        for manifest in retry:
            self._on_commit(manifest)
        try:
            return self._database.cursor()
        except duckdb.Error as exc:  # closed by another thread just now
            raise Unavailable("the query engine is closed") from exc

    # -- views -------------------------------------------------------------------------

    def _on_commit(self, manifest: Manifest) -> None:
        """Catalog listener: point the dataset's view at the new version's objects.

        Never raises into the catalog's commit; a failed refresh is retried on a later
        query (the committed data stays safe in storage either way).
        """
        try:
            self._refresh_view(manifest)
        except Exception as exc:
            with self._ddl_lock:
                self._pending[manifest.name] = manifest
                self._pending_tried = time.monotonic()
            log.error("query_view_failed", dataset=manifest.name, version=manifest.version,
                      error=str(exc))

    def _refresh_view(self, manifest: Manifest) -> None:
        started = time.perf_counter()
        with self._ddl_lock:
            if self._closed or self._versions.get(manifest.name, 0) >= manifest.version:
                return  # listeners may run out of order; never go back a version
            urls = [self.storage.url(o.key) for o in manifest.objects]
            self._ddl.execute(self._view_sql(manifest, urls))
            self._versions[manifest.name] = manifest.version
            self._generation += 1
            self._pending.pop(manifest.name, None)
        log.info("query_view_refreshed", dataset=manifest.name, version=manifest.version,
                 objects=len(manifest.objects),
                 seconds=round(time.perf_counter() - started, 4))
        self._cache.offer(manifest, urls)

    def _serve_from_table(self, manifest: Manifest, table: str) -> bool:
        """Cache callback: point the view at ``table`` if its version is still current."""
        with self._ddl_lock:
            if self._closed or self._versions.get(manifest.name) != manifest.version:
                return False
            self._ddl.execute(
                f"CREATE OR REPLACE VIEW {_identifier(manifest.name)} AS SELECT * FROM {table}"
            )
            self._generation += 1
        return True

    @staticmethod
    def _view_sql(manifest: Manifest, urls: list[str]) -> str:
        name = _identifier(manifest.name)
        if urls:  # a partitioned dataset's view prunes by folder (hive partitioning)
            options = view_options(manifest.layout, manifest.arrow_schema())
            return f"CREATE OR REPLACE VIEW {name} AS {parquet_source(urls, options)}"
        return f"CREATE OR REPLACE VIEW {name} AS {_empty_select(manifest.arrow_schema())}"


def _stream(
    cursor: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, deadline: Deadline
) -> Batches:
    """DuckDB's batches, with its errors as ``LakeError``s and the deadline enforced."""
    try:
        while True:
            deadline.check()
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except Exception as exc:
                raise translate(exc, deadline) from exc
            yield batch
    finally:
        deadline.finish()
        cursor.close()


# -- the database ------------------------------------------------------------------------


DEFAULT_MEMORY_FRACTION = 0.5  # of the machine's memory, when query.memory_limit is unset


def _default_memory_limit() -> str:
    total = physical_memory()
    if total is None:
        return "4GiB"
    return f"{int(total * DEFAULT_MEMORY_FRACTION) // (1024 * 1024)}MiB"


def _memory_budget(database: duckdb.DuckDBPyConnection) -> int:
    """The budget DuckDB took (``memory_limit``), in bytes."""
    row = database.execute("SELECT current_setting('memory_limit')").fetchone()
    budget = parse_bytes(str(row[0])) if row else None
    return budget if budget else 4 * 1024**3


def _open_database(storage: Storage, query: QuerySettings) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_unsigned_extensions": "false",
        "allow_persistent_secrets": "false",
        "python_enable_replacements": "false",
    }
    if query.threads is not None:
        config["threads"] = str(query.threads)
    config["memory_limit"] = query.memory_limit or _default_memory_limit()
    try:
        database = open_database(config)
    except duckdb.Error as exc:  # threads or memory_limit DuckDB does not accept
        raise InvalidInput(f"invalid setting query.threads or query.memory_limit: {exc}") from exc
    try:
        database.execute("SET parquet_metadata_cache = true")  # objects are immutable
        storage.configure_duckdb(database)
        database.execute(
            f"SET GLOBAL allowed_directories = [{_literal(storage.url(DATASETS) + '/')}]")
        database.execute("SET GLOBAL enable_external_access = false")
        database.execute("SET GLOBAL lock_configuration = true")
    except duckdb.Error as exc:
        database.close()
        raise StorageError(f"cannot start the query engine: {exc}") from exc
    except BaseException:
        database.close()
        raise
    return database


def _empty_select(schema: pa.Schema) -> str:
    """A typed zero-row SELECT for a dataset whose version has no objects."""
    scratch = open_database()
    try:
        relation = scratch.from_arrow(schema.empty_table())
        columns = [
            f"CAST(NULL AS {column_type}) AS {_identifier(column)}"
            for column, column_type in zip(relation.columns, relation.types, strict=True)
        ]
    finally:
        scratch.close()
    return f"SELECT {', '.join(columns) or '1 AS empty'} WHERE false"


def _with_position(cursor: duckdb.DuckDBPyConnection, sql: str, error: duckdb.Error
                   ) -> duckdb.Error:
    """The same binding error with DuckDB's ``LINE 1:`` and caret, which the relational API
    leaves out: binding the statement again fails the same way before anything runs."""
    if not isinstance(error, duckdb.BinderException | duckdb.CatalogException):
        return error
    try:
        cursor.execute(sql)
    except duckdb.Error as again:
        if type(again) is type(error) and str(again).startswith(str(error)):
            return again
    return error
