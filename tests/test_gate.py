"""The acceptance gate, run as a user runs it (a subprocess), on a small fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROWS = 20_000


def run_gate(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "FLIGHT_LAKE_BENCH_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gate", "--rows", str(ROWS), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_gate_passes_and_records_the_baseline(tmp_path: Path) -> None:
    baseline = tmp_path / "BASELINE.md"
    result = run_gate(tmp_path, "--baseline", str(baseline))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GATE PASSED" in result.stdout
    assert f'[{{"count_star()":{ROWS}}}]' in result.stdout
    report = baseline.read_text()
    assert f"python -m benchmarks.gate --rows {ROWS}" in report
    for figure in ("HTTP (curl -F)", "Flight DoPut", "count(*), HTTP", "IL group-by, Flight"):
        assert figure in report
    assert "after a restart: the catalog lists both datasets" in report
    assert "after the restart: POST /v1/sql count(*)" in report
    assert "peak during the ingests" in report


@pytest.mark.slow
def test_gate_fails_loudly_when_an_assertion_breaks(tmp_path: Path) -> None:
    # An upload cap below the fixture's size makes the curl ingest answer 413.
    result = run_gate(tmp_path, "--no-baseline", FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES="100000")
    assert result.returncode == 1
    assert "GATE PASSED" not in result.stdout
    assert "GATE FAILED" in result.stderr
    assert "413" in result.stderr
