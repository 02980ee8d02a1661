"""Read deadlines: one watchdog thread interrupts each DuckDB query still running at its deadline.

Every read (:mod:`flight_lake.reads`) gets a :class:`Deadline`. A read that streams stored
objects checks it before each batch; a read that runs DuckDB also hands its cursor to the
:class:`Watchdog`, which keeps the watched deadlines in a heap and, at each one's time,
interrupts the cursor of a query that has not finished. :meth:`Deadline.interrupt` ends a
read early on request (cancellation by read id). The engine turns DuckDB's interrupt into
:meth:`Deadline.error` — ``QueryTimeout`` or ``Cancelled`` — because :attr:`Deadline.fired`
tells those apart from an interrupt at shutdown.

A read whose result streams is also watched with :meth:`Watchdog.expire`: at its deadline
the watchdog calls the deadline's ``on_expire`` (``Result.abandon``), so a stream the
client stopped reading gives back its DuckDB result and its place among the open results.

Locks: ``Watchdog._wake`` guards the heap; nothing is called under it but
``cursor.interrupt()`` and ``on_expire`` (which takes the result's and the registry's locks,
never the watchdog's). A deadline's own fields are plain assignments, read without a lock.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import duckdb
import structlog

from flight_lake.errors import Cancelled, LakeError, QueryTimeout, TooLarge

log = structlog.get_logger()

# Finished deadlines leave the heap only on reaching its top; past this size, sweep them.
_COMPACT_AT = 4096
# An interrupted query that has not ended is interrupted again this often: DuckDB clears an
# interrupt that lands between two queries or just before one starts.
_REPEAT_SECONDS = 0.05


class Interruptible(Protocol):
    """What a deadline stops: a DuckDB cursor, or a Spark operation (``spark_engine``)."""

    def interrupt(self) -> None: ...


@dataclass(eq=False)
class Deadline:
    """When one read must have ended; ``cursor`` is the query to interrupt, if any."""

    at: float
    seconds: float
    cursor: Interruptible | None = field(default=None, compare=False, repr=False)
    fired: bool = field(default=False, compare=False)  # interrupted: by time or on request
    cancelled: bool = field(default=False, compare=False)  # interrupted on request
    finished: bool = field(default=False, compare=False)
    exhausted: str | None = field(default=None, compare=False)  # stopped at the memory budget
    # Ends the read from the watchdog's thread (closes its result); False: not now, retry.
    on_expire: Callable[[LakeError], bool] | None = field(default=None, compare=False,
                                                          repr=False)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.at

    def check(self) -> None:
        """Raise the read's error if its time is up or it was cancelled."""
        if self.expired():
            raise self.error()

    def finish(self) -> None:
        """The read ended: nothing to interrupt any more."""
        self.finished = True
        self.cursor = None

    def interrupt(self, *, cancelled: bool = True) -> None:
        """Stop the read now (cancelled) or because its time is up (``cancelled=False``)."""
        if self.finished:
            return
        self.cancelled = self.cancelled or cancelled
        self.fired = True
        cursor = self.cursor
        if cursor is not None:
            with contextlib.suppress(duckdb.Error):  # the cursor may have closed meanwhile
                cursor.interrupt()

    def error(self) -> LakeError:
        if self.exhausted is not None:
            return TooLarge(self.exhausted)
        if self.cancelled:
            return Cancelled("the read was cancelled")
        return QueryTimeout(
            f"the query ran longer than query.timeout_seconds ({self.seconds:g} s) "
            "and was stopped"
        )

    def timeout(self) -> LakeError:
        """The error for an interrupted query (the engine's error translation asks this)."""
        return self.error()


class Watchdog:
    """One thread that interrupts each watched query still running at its deadline.

    ``start()`` starts the thread and ``stop()`` ends it; nothing runs in the constructor.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._compact_at = _COMPACT_AT
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._wake:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
        self._thread.start()

    def watch(self, deadline: Deadline, cursor: Interruptible) -> None:
        """Interrupt ``cursor`` at ``deadline`` unless the read has finished by then."""
        deadline.cursor = cursor
        self._push(time.monotonic() + _REPEAT_SECONDS if deadline.fired else deadline.at,
                   deadline)

    def expire(self, deadline: Deadline) -> None:
        """At ``deadline``, end its read through ``deadline.on_expire`` even if no query
        runs (a stream suspended because its client stopped reading)."""
        self._push(deadline.at, deadline)

    def cancel(self, deadline: Deadline) -> None:
        """Interrupt ``deadline``'s read now, and again until it ends (``Cancelled``)."""
        deadline.interrupt()
        if deadline.cursor is not None:
            self._push(time.monotonic() + _REPEAT_SECONDS, deadline)

    def exhaust(self, detail: str) -> bool:
        """Stop the read running longest with ``TooLarge(detail)`` (the memory budget is
        reached): the one most likely to hold the memory, while short reads go on. Return
        whether one was stopped."""
        with self._wake:
            running = [entry[2] for entry in self._heap
                       if not entry[2].finished and entry[2].exhausted is None]
        if not running:
            return False
        oldest = min(running, key=lambda deadline: deadline.at - deadline.seconds)
        oldest.exhausted = detail
        oldest.interrupt(cancelled=False)
        if oldest.cursor is not None:
            self._push(time.monotonic() + _REPEAT_SECONDS, oldest)
        return True

    def _push(self, at: float, deadline: Deadline) -> None:
        with self._wake:
            if len(self._heap) > self._compact_at:  # drop deadlines of finished queries
                self._heap = [entry for entry in self._heap if not entry[2].finished]
                heapq.heapify(self._heap)
                self._compact_at = max(_COMPACT_AT, 2 * len(self._heap))
            heapq.heappush(self._heap, (at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].finished):
                    _, _, deadline = heapq.heappop(self._heap)
                    if self._fire(deadline):
                        heapq.heappush(self._heap, (now + _REPEAT_SECONDS, next(self._order),
                                                    deadline))
                wait = self._heap[0][0] - now if self._heap else None
                self._wake.wait(timeout=wait)

    @staticmethod
    def _fire(deadline: Deadline) -> bool:
        """Interrupt a read still running; True if it should be interrupted again later."""
        if deadline.finished:
            return False  # finished in time
        if not deadline.fired:
            log.warning("query_timeout", seconds=deadline.seconds)
        deadline.interrupt(cancelled=deadline.cancelled)
        on_expire = deadline.on_expire
        if on_expire is not None and on_expire(deadline.error()):
            deadline.finish()
            return False
        return True
