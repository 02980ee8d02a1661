"""The benchmark runner runs end to end through every section (CI checks that it runs, not the
numbers): ``--smoke``, the quick plan's sections on the smallest data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_runs_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)]
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "FLIGHT_LAKE_BENCH_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    assert "python -m benchmarks.run --smoke" in report
    for section in (
        "## Targets",
        "## 1-3. Ingest",
        "## 4. Query latency",
        "## 5. Full scan",
        "## 6. Server memory",
        "## 7. 16 concurrent clients",
        "## 14. A wide CSV",
        "in-process pyarrow `read_csv` (`newlines_in_values=True`)",
        "## 11. Layouts",
        "## 12. Many files, one dataset",
    ):
        assert section in report
    for peer in ("ROAPI FlightSQL", "ROAPI HTTP", "bare pyarrow Flight", "in-process DuckDB"):
        assert peer in report
    targets = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert targets.count("**met**") + targets.count("**missed**") >= 20
