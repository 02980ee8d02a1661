"""Finding 1: one query can no longer take the machine's memory.

``query.memory_limit`` is the server's budget: DuckDB's own limit, and the resident memory
past which the memory guard stops running queries (``too_large``), for what DuckDB does not
account (list building, huge strings, Arrow results); values built in one step, which
nothing can interrupt, are refused by size before they run. Measured on a real server
process with psutil; the margins are generous. Once a query is stopped, the memory it
held goes back to the system within seconds (flight_lake.database says what made it stay
before), and a second hostile query takes nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from flight_lake.errors import TooLarge
from flight_lake.sql_guard import SqlGuard
from tests.support import ServeProcess

MiB = 1024 * 1024
BUDGET = 400 * MiB  # well above an idle server (100-200 MiB); less memory to churn
MARGIN = 600 * MiB
SETTLED = 200 * MiB  # above the start, once a stopped query's memory has gone back


class PeakRss:
    """Samples a process's resident memory in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def test_hostile_queries_stop_at_the_budget_and_memory_comes_back(
        serve_process: Callable[..., ServeProcess]) -> None:
    server = serve_process(env={"FLIGHT_LAKE_QUERY__MEMORY_LIMIT": f"{BUDGET // MiB}MiB",
                                "FLIGHT_LAKE_QUERY__TIMEOUT_SECONDS": "60"})
    http = server.wait_for("server_started")["http"]
    with httpx.Client(base_url=http, timeout=120) as client:
        assert client.post("/v1/sql", json={"sql": "SELECT 42 AS x"}).json() == [{"x": 42}]
        process = psutil.Process(server.process.pid)
        baseline = process.memory_info().rss
        # built in one step, which nothing can interrupt: refused before it runs
        for sql in ("SELECT len(list(range(1000000000))) AS n",
                    "SELECT repeat('x', 200000000) AS s FROM range(40)"):
            answer = client.post("/v1/sql", json={"sql": sql})
            assert answer.status_code == 413 and "in a single step" in answer.text, answer.text
        # accumulated chunk by chunk: stopped by the memory guard at the budget
        for sql in ("SELECT len(list(x)) AS n FROM range(1000000000) t(x)",
                    "SELECT len(list(a.x)) AS n FROM range(40000) a(x), range(40000) b(y)"):
            with PeakRss(server.process.pid) as rss:
                answer = client.post("/v1/sql", json={"sql": sql})
            assert answer.status_code == 413, (sql, answer.status_code, answer.text[:200])
            assert answer.json()["error"] == "too_large"
            assert "query.memory_limit" in answer.json()["detail"]
            assert rss.peak < BUDGET + MARGIN, (sql, rss.peak // MiB)
            assert settled_rss(process, baseline + SETTLED) < baseline + SETTLED, sql
            # the same query again takes nothing more: what was freed is not leaked
            with PeakRss(server.process.pid) as again:
                assert client.post("/v1/sql", json={"sql": sql}).status_code == 413
            assert again.peak < BUDGET + MARGIN, (sql, again.peak // MiB)
            assert settled_rss(process, baseline + SETTLED) < baseline + SETTLED, sql
        assert baseline < BUDGET, baseline // MiB
        # and the server still answers
        assert client.post("/v1/sql", json={"sql": "SELECT 42 AS x"}).json() == [{"x": 42}]


def settled_rss(process: psutil.Process, target: int, seconds: float = 15) -> int:
    """The process's resident memory once it is under ``target``, or after ``seconds``."""
    give_up = time.monotonic() + seconds
    while True:
        rss = int(process.memory_info().rss)
        if rss < target or time.monotonic() > give_up:
            return rss
        time.sleep(0.1)


@pytest.mark.parametrize("sql", [
    "SELECT repeat('x', 4000::BIGINT * 1000000) AS s",
    "SELECT lpad('a', 2 * 5000000000, 'b') AS s",
    "SELECT len(list_resize([1], (2 ^ 40)::BIGINT)) AS n",
    "SELECT repeat('ab', abs(-20000000)) AS s",
])
def test_a_size_computed_from_constants_is_refused_before_it_runs(sql: str) -> None:
    with pytest.raises(TooLarge, match="in a single step"):
        SqlGuard().check(sql)


@pytest.mark.parametrize("sql", [
    "SELECT repeat('x', 10 * 10) AS s",  # small once folded
    "SELECT repeat('x', x * 1000) AS s FROM range(3) t(x)",  # reads a column: runs
])
def test_small_or_column_sized_values_still_run(sql: str) -> None:
    assert SqlGuard().check(sql).text == sql
