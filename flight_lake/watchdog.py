"""Query deadlines: one watchdog thread interrupts each query still running at its deadline.

The query engine arms a :class:`Deadline` per query (on its own DuckDB cursor) and cancels
it when the query, including the streaming of its result, ends. The :class:`Watchdog`
keeps the armed deadlines in a heap and, at each one's time, interrupts the cursor of a
query that has not finished; the engine then turns DuckDB's interrupt into
``QueryTimeout`` (:meth:`Deadline.timeout`), because :attr:`Deadline.fired` tells a
timeout apart from an interrupt at shutdown.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field

import duckdb
import structlog

from flight_lake.errors import QueryTimeout

log = structlog.get_logger()

# Cancelled deadlines leave the heap only on reaching its top; past this size, sweep them.
_COMPACT_AT = 4096


@dataclass(order=True)
class Deadline:
    """When one query must have ended; ``cursor`` is None once it has."""

    at: float
    seconds: float = field(compare=False)
    cursor: duckdb.DuckDBPyConnection | None = field(compare=False, repr=False)
    fired: bool = field(default=False, compare=False)

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.at

    def cancel(self) -> None:
        self.cursor = None

    def timeout(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran longer than query.timeout_seconds ({self.seconds:g} s) "
            "and was stopped"
        )


class Watchdog:
    """One thread that interrupts each query still running at its deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._compact_at = _COMPACT_AT
        self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
        self._thread.start()

    def arm(self, seconds: float, cursor: duckdb.DuckDBPyConnection) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, seconds, cursor)
        with self._wake:
            if len(self._heap) > self._compact_at:  # drop deadlines of finished queries
                self._heap = [entry for entry in self._heap if entry[2].cursor is not None]
                heapq.heapify(self._heap)
                self._compact_at = max(_COMPACT_AT, 2 * len(self._heap))
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._wake.notify()
        return deadline

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].cursor is None):
                    _, _, deadline = heapq.heappop(self._heap)
                    self._fire(deadline)
                wait = self._heap[0][0] - now if self._heap else None
                self._wake.wait(timeout=wait)

    @staticmethod
    def _fire(deadline: Deadline) -> None:
        cursor = deadline.cursor
        if cursor is None:
            return  # finished in time
        deadline.fired = True
        log.warning("query_timeout", seconds=deadline.seconds)
        with contextlib.suppress(duckdb.Error):  # the cursor may have closed meanwhile
            cursor.interrupt()
