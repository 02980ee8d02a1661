"""The memory budget: stop running queries when the server's memory passes it.

DuckDB's ``memory_limit`` (set to the same budget) does not account for everything: a
``list(range(10^9))`` or ``repeat('x', 4e9)`` builds its value outside the buffer manager,
and Arrow results are materialised outside DuckDB altogether; the adversarial run saw
12 GB from one query under a 2 GB limit. One thread here reads the process's resident
memory (``/proc/self/statm``, a few microseconds) every ``_PERIOD_SECONDS``; past the
budget it has the watchdog interrupt the query running longest (the likeliest holder of
the memory; short queries go on), which fails with ``too_large`` naming the budget, then
lets it free its memory before stopping another. DuckDB's allocator background threads
then give that memory back to the system within seconds (:mod:`flight_lake.database`).

On systems without ``/proc`` the guard is off and DuckDB's own limit is the only one.
"""

from __future__ import annotations

import os
import threading

import structlog

from flight_lake.watchdog import Watchdog

log = structlog.get_logger()

_PERIOD_SECONDS = 0.02
_SETTLE_SECONDS = 0.25
_STATM = "/proc/self/statm"


def resident_bytes() -> int | None:
    """This process's resident memory, or None where ``/proc`` is missing."""
    try:
        with open(_STATM, "rb") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def physical_memory() -> int | None:
    """The machine's memory in bytes, or None if unknown."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        return None


class MemoryGuard:
    """Watches resident memory; past ``budget_bytes`` it stops the longest-running query."""

    def __init__(self, watchdog: Watchdog, budget_bytes: int) -> None:
        self.watchdog = watchdog
        self.budget_bytes = budget_bytes
        self.stopped_queries = 0  # for health and tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None or resident_bytes() is None:
            return
        self._thread = threading.Thread(target=self._run, name="memory-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        budget_mib = self.budget_bytes // (1024 * 1024)
        detail = (f"the server's memory budget, query.memory_limit ({budget_mib} MiB), was "
                  "reached; the query was stopped (ask for less: LIMIT, fewer columns, "
                  "smaller values)")
        while not self._stop.wait(_PERIOD_SECONDS):
            rss = resident_bytes()
            if rss is None or rss <= self.budget_bytes:
                continue
            if self.watchdog.exhaust(detail):
                self.stopped_queries += 1
                log.warning("memory_budget_reached", rss_bytes=rss,
                            budget_bytes=self.budget_bytes, queries_stopped=1)
                self._stop.wait(_SETTLE_SECONDS)  # let it free its memory before the next
