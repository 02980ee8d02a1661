"""Section 14 alone: the wide CSV through DoPut, beside the workers CSV's DoPut.

    python -m benchmarks.wide_put [--rounds 3]

Each round starts a fresh server (as section 14 does) for the 10,000-column x 2,000-row
CSV, then another for the 500,000-row workers CSV, and records each DoPut's seconds and
the server's peak RSS above idle; the medians follow, with the load average of each round
(the machine is shared: say it with every figure). No report is written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks import harness, workloads
from benchmarks.harness import LakeServer

WIDE_COLUMNS, WIDE_ROWS, WORKERS_ROWS = 10_000, 2_000, 500_000


def put_once(path: Path, rows: int, folder: Path) -> tuple[float, float]:
    """One DoPut of ``path`` into a fresh server: (seconds, peak MiB above idle)."""
    server = LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(folder / "lake")}, folder)
    server.start()
    try:
        seconds, peak = workloads.measured_put(server, "put", path, rows)
        return seconds, peak / 2**20
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    cases = {"wide": (harness.wide_fixture(WIDE_COLUMNS, WIDE_ROWS), WIDE_ROWS),
             "workers": (harness.fixture(WORKERS_ROWS), WORKERS_ROWS)}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as work:
        for index in range(rounds):
            for name, (path, rows) in cases.items():
                figures[name].append(put_once(path, rows, Path(work) / f"{name}{index}"))
                seconds, peak = figures[name][-1]
                load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
                print(f"{name} round {index + 1}: {seconds:.2f} s, {peak:.0f} MiB above idle "
                      f"(load {load})", flush=True)
    for name, runs in figures.items():
        print(f"{name}: median {statistics.median(s for s, _ in runs):.2f} s, "
              f"median peak {statistics.median(p for _, p in runs):.0f} MiB above idle, "
              f"max {max(p for _, p in runs):.0f} MiB")


if __name__ == "__main__":
    main()
