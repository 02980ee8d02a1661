"""The code stays ruff- and mypy-clean, and the tests keep their shape: CI fails the day not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True,
                          text=True, timeout=240)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = run("mypy", "flight_lake", "clients/flight_lake_client")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_test_module_imports_another_or_conftest() -> None:
    """Shared code lives in fixtures (tests/conftest.py) or plain helper modules (support)."""
    offending = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                last = name.rpartition(".")[2]
                if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                    offending.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert offending == []
