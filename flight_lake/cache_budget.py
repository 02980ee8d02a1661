"""The cache budget: one bound, ``[cache] max_bytes``, over everything the lake keeps in memory.

Two forms of a dataset can be kept, and both draw on this one budget:

- **decoded Arrow** (:mod:`flight_lake.object_cache`): data objects of datasets that are
  scanned whole (``SELECT * FROM <dataset>``, per-object tickets), streamed from C++;
- **a DuckDB copy** (:mod:`flight_lake.query_cache`): a compressed in-memory table of a
  dataset that SQL reads, so warm queries skip Parquet decoding.

The policy, decided here once: a dataset gets the form its reads use (a plain scan fills
decoded Arrow, other SQL a DuckDB copy; a dataset read both ways may hold both), or
neither when it does not fit. Admission never passes ``max_bytes``: every byte is reserved
before it is held, also while a copy or a decode is still filling. When a reservation does
not fit, decoded Arrow makes room (least recently used objects leave first: they are
rebuilt from one read); a DuckDB copy is never evicted for anything (it is rebuilt only in
the background, after a commit), and a reservation that still does not fit is refused —
that dataset stays on Parquet. A DuckDB copy may also use at most half of DuckDB's
``memory_limit`` (queries need the rest). Both forms follow catalog commits: a dataset's
superseded objects and copy leave as soon as its new version is committed.

Lock: ``_lock`` guards the counters; nothing is called under it. ``ObjectCache._lock`` may
be held while calling in (order: ``ObjectCache._lock`` → ``CacheBudget._lock``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

Form = Literal["arrow", "duckdb"]

# Frees at least the given bytes of decoded Arrow if it can; returns the bytes freed.
MakeRoom = Callable[[int], int]


class CacheBudget:
    """Reservations against ``max_bytes``, by dataset and form; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._used: dict[tuple[str, Form], int] = {}
        self._total = 0
        self._lock = threading.Lock()
        self._make_room: MakeRoom | None = None

    def evict_with(self, make_room: MakeRoom) -> None:
        """Who frees decoded Arrow when a reservation does not fit (the object cache)."""
        self._make_room = make_room

    @property
    def used(self) -> int:
        with self._lock:
            return self._total

    def used_by(self, form: Form) -> int:
        with self._lock:
            return sum(size for (_, kind), size in self._used.items() if kind == form)

    def try_reserve(self, dataset: str, form: Form, size: int) -> bool:
        """Reserve ``size`` bytes if they fit now, evicting nothing."""
        if size <= 0:
            return True
        with self._lock:
            if self._total + size > self.max_bytes:
                return False
            self._used[(dataset, form)] = self._used.get((dataset, form), 0) + size
            self._total += size
            return True

    def reserve(self, dataset: str, form: Form, size: int) -> bool:
        """Reserve ``size`` bytes, making room from decoded Arrow if needed; False if not."""
        if self.try_reserve(dataset, form, size):
            return True
        if size > self.max_bytes or self._make_room is None:
            return False
        with self._lock:
            short = self._total + size - self.max_bytes
        if short > 0:
            self._make_room(short)
        return self.try_reserve(dataset, form, size)

    def release(self, dataset: str, form: Form, size: int) -> None:
        if size <= 0:
            return
        with self._lock:
            held = self._used.get((dataset, form), 0)
            size = min(size, held)
            if held - size > 0:
                self._used[(dataset, form)] = held - size
            else:
                self._used.pop((dataset, form), None)
            self._total -= size

    def status(self) -> dict[str, Any]:
        """``{"max_bytes", "used_bytes", "datasets": {name: {"arrow_bytes", "duckdb_bytes"}}}``."""
        with self._lock:
            used = dict(self._used)
            total = self._total
        datasets: dict[str, dict[str, int]] = {}
        for (name, form), size in sorted(used.items()):
            entry = datasets.setdefault(name, {"arrow_bytes": 0, "duckdb_bytes": 0})
            entry[f"{form}_bytes"] = size
        return {"max_bytes": self.max_bytes, "used_bytes": total, "datasets": datasets}
