"""Soak: mixed load with hostile clients among well-behaved ones, for a bounded time.

``python -m benchmarks.soak [--seconds 30] [--budget-mib 1024]`` starts ``python -m
flight_lake serve`` on loopback (ports 0, a temporary folder, ``query.memory_limit`` set to
the budget), seeds one dataset, then runs for ``--seconds``:

- well-behaved clients: Flight GROUP BY queries, HTTP counts, small HTTP appends; their
  only acceptable refusal is ``busy`` (retried), any other error counts against the run;
- hostile clients, each in a loop: SQL reaching ``pg_settings``, SQL over the size cap,
  ``list(range(10^9))``, a cross-join ``list()`` the memory guard must stop, an unclosed
  quote, a body of NUL bytes, a 10,000-segment storage key, an endless request head,
  and an uploader trickling a byte at a time.

It samples the server's resident memory with psutil and writes error counts, p50/p99 and
the peak RSS into ``docs/BENCHMARKS.md`` (the "Soak" section, kept by ``benchmarks.run``).
The run passes when the well-behaved clients saw no error but ``busy`` and the peak RSS
stayed under the budget plus ``MARGIN_MIB``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pyarrow.flight as flight

from benchmarks import harness

MARGIN_MIB = 512
REPORT = harness.REPO / "docs" / "BENCHMARKS.md"
START, END = "<!-- soak -->", "<!-- /soak -->"


@dataclass
class Tally:
    """What one class of client saw: outcomes by code and latencies of successes."""

    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, seconds: float | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if seconds is not None and outcome == "ok":
                self.seconds.append(seconds)

    def percentile(self, share: float) -> float:
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


class Soak:
    def __init__(self, seconds: float, budget_mib: int, workdir: Path) -> None:
        self.seconds, self.budget_mib, self.workdir = seconds, budget_mib, workdir
        self.good_seen, self.hostile_seen = Tally(), Tally()
        self.peak_rss = 0
        self.stop = threading.Event()

    # -- the server ----------------------------------------------------------------------

    def start_server(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_LAKE_")}
        env.update({
            "FLIGHT_LAKE_STORAGE__URI": str(self.workdir / "lake"),
            "FLIGHT_LAKE_INGEST__SPOOL_DIR": str(self.workdir / "spool"),
            "FLIGHT_LAKE_QUERY__MEMORY_LIMIT": f"{self.budget_mib}MiB",
            "FLIGHT_LAKE_QUERY__TIMEOUT_SECONDS": "20",
            # this repository's code, installed or not (the client package is under clients/)
            "PYTHONPATH": os.pathsep.join(filter(None, [
                str(harness.REPO), str(harness.REPO / "clients"), env.get("PYTHONPATH")])),
        })
        self.log_path = self.workdir / "serve.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flight_lake", "serve", "--flight-port", "0",
             "--http-port", "0"], cwd=self.workdir, env=env, stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if '"server_started"' in line:
                    event = json.loads(line)
                    self.flight_uri, self.http_uri = event["flight"], event["http"]
                    self.port = int(self.http_uri.rsplit(":", 1)[1])
                    return
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise SystemExit("the server did not start in 60 s")

    def sample_rss(self) -> None:
        server = psutil.Process(self.process.pid)
        while not self.stop.wait(0.05):
            try:
                self.peak_rss = max(self.peak_rss, server.memory_info().rss)
            except psutil.Error:
                return

    # -- well-behaved clients ------------------------------------------------------------

    def well_behaved(self, number: int) -> None:
        client = flight.connect(self.flight_uri)
        with httpx.Client(base_url=self.http_uri, timeout=60) as http:
            step = 0
            while not self.stop.is_set():
                step += 1
                started = time.perf_counter()
                try:
                    if step % 5 == 0:
                        body = "".join(f"{number * 10**6 + step},IL,dev,{step}\n"
                                       for _ in range(50))
                        answer = http.post("/v1/ingest", params={"name": "workers",
                                                                 "mode": "append"},
                                           content=("id,state,role,pay\n" + body).encode(),
                                           headers={"Content-Type": "text/csv"})
                        outcome = "ok" if answer.status_code == 200 else answer.json()["error"]
                    elif step % 2 == 0:
                        answer = http.post("/v1/sql", json={
                            "sql": "SELECT count(*) AS n FROM workers WHERE state = 'IL'"})
                        outcome = "ok" if answer.status_code == 200 else answer.json()["error"]
                    else:
                        ticket = flight.Ticket(json.dumps({"sql": (
                            "SELECT role, count(*) AS n, avg(pay) AS pay FROM workers "
                            "GROUP BY role ORDER BY role")}).encode())
                        client.do_get(ticket).read_all()
                        outcome = "ok"
                except flight.FlightError as exc:
                    outcome = _flight_code(exc)
                except (httpx.HTTPError, ValueError) as exc:
                    outcome = f"transport:{type(exc).__name__}"
                self.good_seen.add(outcome, time.perf_counter() - started)
                if outcome == "busy":
                    time.sleep(0.2)

    # -- hostile clients -----------------------------------------------------------------

    def hostile(self, number: int) -> None:
        actions = [self._pg_settings, self._huge_sql, self._built_in_one_step,
                   self._unclosed_quote, self._nul_body, self._deep_key, self._endless_head,
                   self._trickle]
        if number == 0:
            actions.append(self._memory_explosion)
        step = number
        with httpx.Client(base_url=self.http_uri, timeout=60) as http:
            while not self.stop.is_set():
                action = actions[step % len(actions)]
                step += 1
                try:
                    outcome = action(http)
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    outcome = f"transport:{type(exc).__name__}"
                self.hostile_seen.add(f"{action.__name__.strip('_')}:{outcome}")

    @staticmethod
    def _sql(http: httpx.Client, sql: str) -> str:
        answer = http.post("/v1/sql", json={"sql": sql})
        return "ok" if answer.status_code == 200 else str(answer.json()["error"])

    def _pg_settings(self, http: httpx.Client) -> str:
        return self._sql(http, "SELECT * FROM pg_catalog.pg_settings")

    def _huge_sql(self, http: httpx.Client) -> str:
        values = ",".join(str(i) for i in range(100_000))
        return self._sql(http, f"SELECT count(*) FROM workers WHERE id IN ({values})")

    def _built_in_one_step(self, http: httpx.Client) -> str:
        return self._sql(http, "SELECT len(list(range(1000000000)))")

    def _memory_explosion(self, http: httpx.Client) -> str:
        return self._sql(http, "SELECT len(list(a.x)) FROM range(40000) a(x), range(40000) b(y)")

    @staticmethod
    def _ingest(http: httpx.Client, name: str, body: bytes) -> str:
        answer = http.post("/v1/ingest", params={"name": name}, content=body,
                           headers={"Content-Type": "text/csv"})
        return "ok" if answer.status_code == 200 else str(answer.json()["error"])

    def _unclosed_quote(self, http: httpx.Client) -> str:
        return self._ingest(http, "hostile_quote", b'a,b\n1,"never closed\n2,x\n')

    def _nul_body(self, http: httpx.Client) -> str:
        return self._ingest(http, "hostile_nul", b"\x00" * 100_000)

    def _deep_key(self, http: httpx.Client) -> str:
        answer = http.get("/v1/storage/get/" + "/".join(["a"] * 10_000))
        return "ok" if answer.status_code == 200 else str(answer.json()["error"])

    def _endless_head(self, http: httpx.Client) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                for _ in range(2_000):
                    sock.sendall(b"X-Filler: " + b"v" * 1000 + b"\r\n")
            except OSError:
                pass
            answer = sock.recv(200)
        match = re.match(rb"HTTP/1.1 (\d+)", answer)
        return match.group(1).decode() if match else "no answer"

    def _trickle(self, http: httpx.Client) -> str:
        """Hold an ingest slot by sending a byte every 0.25 s, for up to 3 s."""
        def body() -> Iterator[bytes]:
            yield b"a,b\n"
            for _ in range(12):
                if self.stop.is_set():
                    return
                time.sleep(0.25)
                yield b"1"
            yield b",2\n"
        answer = http.post("/v1/ingest", params={"name": "hostile_trickle", "mode": "replace"},
                           content=body(), headers={"Content-Type": "text/csv"})
        return "ok" if answer.status_code == 200 else str(answer.json()["error"])

    # -- the run -------------------------------------------------------------------------

    def run(self, good_clients: int, hostile_clients: int) -> dict:
        self.start_server()
        try:
            seed = "id,state,role,pay\n" + "".join(
                f"{i},{['IL', 'NY', 'CA'][i % 3]},{['dev', 'ops'][i % 2]},{i % 97}\n"
                for i in range(50_000))
            answer = httpx.post(f"{self.http_uri}/v1/ingest", params={"name": "workers"},
                                content=seed.encode(), headers={"Content-Type": "text/csv"},
                                timeout=60)
            answer.raise_for_status()
            idle_rss = psutil.Process(self.process.pid).memory_info().rss
            threads = [threading.Thread(target=self.sample_rss, daemon=True)]
            threads += [threading.Thread(target=self.well_behaved, args=(n,), daemon=True)
                        for n in range(good_clients)]
            threads += [threading.Thread(target=self.hostile, args=(n,), daemon=True)
                        for n in range(hostile_clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(self.seconds)
            self.stop.set()
            for thread in threads:
                thread.join(90)
            elapsed = time.perf_counter() - started
            healthy = httpx.get(f"{self.http_uri}/health", timeout=10).status_code == 200
        finally:
            self.stop.set()
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        good_errors = {k: v for k, v in self.good_seen.outcomes.items() if k not in ("ok", "busy")}
        peak_mib = self.peak_rss / 2**20
        return {
            "seconds": round(elapsed, 1), "good_clients": good_clients,
            "hostile_clients": hostile_clients, "budget_mib": self.budget_mib,
            "margin_mib": MARGIN_MIB, "idle_rss_mib": round(idle_rss / 2**20),
            "peak_rss_mib": round(peak_mib), "good": dict(self.good_seen.outcomes),
            "good_errors": good_errors,
            "hostile": dict(sorted(self.hostile_seen.outcomes.items())),
            "p50_ms": round(self.good_seen.percentile(0.50), 1),
            "p99_ms": round(self.good_seen.percentile(0.99), 1),
            "healthy_after": healthy,
            "passed": not good_errors and healthy and peak_mib < self.budget_mib + MARGIN_MIB,
        }


def _flight_code(exc: flight.FlightError) -> str:
    try:
        return str(json.loads(exc.extra_info or b"{}").get("error", type(exc).__name__))
    except ValueError:
        return type(exc).__name__


def _codes(counts: dict) -> str:
    return json.dumps(counts, sort_keys=True) if counts else "none"


def render(result: dict, command: str) -> str:
    lines = [
        START,
        "## Soak: hostile clients among well-behaved ones (issue 11)",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"revision {harness.git_revision()}: {result['good_clients']} well-behaved and "
        f"{result['hostile_clients']} hostile clients for {result['seconds']} s against one "
        f"`flight-lake serve` on loopback with `query.memory_limit` = "
        f"{result['budget_mib']} MiB.",
        "",
        f"- **verdict**: {'passed' if result['passed'] else 'FAILED'} (well-behaved clients "
        "see no error but `busy`; peak RSS under the budget plus "
        f"{result['margin_mib']} MiB; `/health` answers afterwards)",
        f"- **well-behaved**: {json.dumps(result['good'], sort_keys=True)}; errors other than "
        f"busy: {_codes(result['good_errors'])}; latency p50 "
        f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms (busy refusals excluded)",
        f"- **server RSS**: {result['idle_rss_mib']} MiB after seeding, peak "
        f"{result['peak_rss_mib']} MiB (budget {result['budget_mib']} MiB)",
        "- **hostile, by action and outcome**:",
        "",
        "| action: outcome | count |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in result["hostile"].items()),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_report(section: str, path: Path = REPORT) -> None:
    harness.write_section(section, START, END, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--budget-mib", type=int, default=1024)
    parser.add_argument("--good", type=int, default=4, help="well-behaved clients")
    parser.add_argument("--hostile", type=int, default=3, help="hostile clients")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flight-lake-soak-") as workdir:
        result = Soak(args.seconds, args.budget_mib, Path(workdir)).run(args.good, args.hostile)
    command = "python -m benchmarks.soak" + "".join(
        f" {arg}" for arg in sys.argv[1:] if arg != "--no-write")
    section = render(result, command)
    print(section)
    if not args.no_write:
        write_report(section)
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
