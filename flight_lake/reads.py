"""The read path: one decision, one deadline and one registry of running reads.

Every front end (Flight, HTTP, Flight SQL) reads through :meth:`Reads.read` (exposed as
``Lake.read``). The decision is made once, from DuckDB's own parse of the statement (the
SQL guard's verdict, cached by digest): a statement that is exactly ``SELECT * FROM
<dataset>`` — and whose DuckDB schema is the dataset's own — is answered by streaming the
stored objects as they are (:mod:`flight_lake.scan`); everything else runs in DuckDB
(:mod:`flight_lake.query`), or in Spark with ``query.engine = "spark"``
(:mod:`flight_lake.spark_engine`: every SQL read, after the same guard). Both branches
run under one :class:`Deadline`: the scan checks it before each batch, DuckDB (or the Spark
operation) is interrupted by the watchdog. Each running read is known by
its id until its result is closed, so :meth:`Reads.cancel` can stop it.

Lock: ``_lock`` guards ``_running`` only; nothing is called while holding it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading

import pyarrow as pa

from flight_lake.catalog import Catalog
from flight_lake.errors import Busy, InvalidInput, NotFound
from flight_lake.query import QueryEngine
from flight_lake.result import Batches, Result
from flight_lake.scan import Scan, ScanService
from flight_lake.spark_engine import SparkEngine
from flight_lake.sql_guard import Statement
from flight_lake.watchdog import Deadline

_RETRY_SECONDS = 1  # a result ends in milliseconds, or at its deadline


class Reads:
    """Answers reads from the stored objects or DuckDB, under a deadline; thread-safe."""

    def __init__(self, catalog: Catalog, query: QueryEngine, scans: ScanService,
                 timeout_seconds: float, max_open: int | None = None,
                 spark: SparkEngine | None = None) -> None:
        self.catalog = catalog
        self.query = query
        self.spark = spark  # runs every SQL read when set (query.engine = "spark")
        self.scans = scans
        self.timeout_seconds = timeout_seconds
        self.max_open = max_open  # results open at once (query.max_open_results); else Busy
        self._running: dict[str, list[Deadline]] = {}  # a ticket may be read twice at once
        self._serial = itertools.count(1)  # ids of reads that did not bring their own
        self._lock = threading.Lock()

    def describe(self, sql: str) -> pa.Schema:
        """The schema ``read(sql)`` answers with (cached by the SQL's digest)."""
        if self.spark is not None:
            return self.spark.schema(self.query.statement(sql))
        return self.query.schema(sql)

    def read(self, sql: str, *, timeout: float | None = None,
             read_id: str | None = None) -> Result:
        """Start reading ``sql``; see ``Lake.read``."""
        deadline, read_id = self._begin(timeout, read_id)
        try:
            statement = self.query.statement(sql, deadline)  # parsing runs under it too
            if self.spark is not None:
                schema, batches = self.spark.stream(statement, deadline)
                return self._result(schema, _whole_if_one_batch(schema, batches), read_id,
                                    deadline)
            scan = self._plain_scan(sql, statement, deadline) if statement.scan_of else None
            if scan is not None:
                return self._result(scan.schema, scan.data, read_id, deadline)
            schema, batches = self.query.stream(sql, deadline, statement)
            return self._result(schema, _whole_if_one_batch(schema, batches), read_id,
                                deadline)
        except BaseException:
            self._end(read_id, deadline)
            raise

    def read_object(self, dataset: str, key: str, *, timeout: float | None = None,
                    read_id: str | None = None) -> Result:
        """Start reading one data object of ``dataset``'s current version; see ``Lake.read``."""
        deadline, read_id = self._begin(timeout, read_id)
        try:
            scan = self.scans.dataset_object(dataset, key, deadline)
            return self._result(scan.schema, scan.data, read_id, deadline)
        except BaseException:
            self._end(read_id, deadline)
            raise

    def cancel(self, read_id: str) -> bool:
        """Stop every running read with ``read_id``; False if none is running."""
        with self._lock:
            deadlines = list(self._running.get(read_id, ()))
        for deadline in deadlines:
            self.query.cancel(deadline)
        return bool(deadlines)

    def running(self) -> int:
        """How many reads have a result not yet closed."""
        with self._lock:
            return sum(len(deadlines) for deadlines in self._running.values())

    def _plain_scan(self, sql: str, statement: Statement, deadline: Deadline) -> Scan | None:
        """The stored objects as the answer, when DuckDB would answer with the same schema.

        Otherwise — an unknown name (DuckDB gives the error), types DuckDB changes such as
        ``large_string`` — None, and DuckDB runs the statement.
        """
        assert statement.scan_of is not None
        try:
            manifest = self.catalog.get(statement.scan_of)
        except (NotFound, InvalidInput):
            return None
        schema = self.query.schema(sql, statement)
        if not schema.equals(manifest.arrow_schema(), check_metadata=False):
            return None
        deadline.check()
        return self.scans.dataset(manifest, schema, deadline)

    def _begin(self, timeout: float | None, read_id: str | None) -> tuple[Deadline, str]:
        seconds = self.timeout_seconds if timeout is None else min(timeout, self.timeout_seconds)
        if seconds <= 0:
            raise InvalidInput("a read's timeout must be positive")
        deadline = Deadline.after(seconds)
        read_id = read_id or f"read-{next(self._serial)}"
        with self._lock:
            if self.max_open is not None and \
                    sum(len(open_) for open_ in self._running.values()) >= self.max_open:
                raise Busy(f"{self.max_open} results are open (query.max_open_results); "
                           f"retry in {_RETRY_SECONDS} s", retry_after=_RETRY_SECONDS)
            self._running.setdefault(read_id, []).append(deadline)
        return deadline, read_id

    def _end(self, read_id: str, deadline: Deadline) -> None:
        deadline.finish()
        with self._lock:
            deadlines = self._running.get(read_id, [])
            if deadline in deadlines:
                deadlines.remove(deadline)
            if not deadlines:
                self._running.pop(read_id, None)

    def _result(self, schema: pa.Schema, data: pa.Table | Batches, read_id: str,
                deadline: Deadline) -> Result:
        result = Result(schema, data, read_id, on_close=lambda: self._end(read_id, deadline))
        if not isinstance(data, pa.Table):  # a stream its client may stop reading
            deadline.on_expire = result.abandon
            self.query.expire(deadline)
        return result


def _whole_if_one_batch(schema: pa.Schema, batches: Batches) -> pa.Table | Batches:
    """A DuckDB answer of at most one batch as a table, else the batches as they come.

    Most answers are one small batch (a count, a lookup, a top-N): read whole here, they
    reach Flight as a table it streams from C++, with no Python generator per call.
    Bounded by ``query.batch_rows``: a second batch means the answer streams.
    """
    first = next(batches, None)
    if first is None:
        batches.close()
        return schema.empty_table()
    second = next(batches, None)
    if second is None:
        batches.close()
        return pa.Table.from_batches([first], schema=schema)
    return _chained([first, second], batches)


def _chained(head: list[pa.RecordBatch], rest: Batches) -> Batches:
    with contextlib.closing(rest):
        yield from head
        yield from rest
