"""README.md's "Use it" runs as written, against a real ``flight-lake serve`` process.

Every ```bash block of the section runs command by command in one scratch folder (the
server's too); a ``# …`` line right after a command is the answer it must print. The
```python block runs as well. Three things change from the text: the default addresses become
the live ones, the 500,000 rows become ``ROWS`` (in the commands and in the answers alike), and
sizes, times and digests in the answers are compared by shape, not value. ``curl`` fails on an
HTTP error here (``--fail-with-body``), so every request must succeed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support import REPO, ServeProcess

README = REPO / "README.md"
ROWS = 20_000
DEFAULT_FLIGHT = "grpc://127.0.0.1:8815"
DEFAULT_HTTP = "http://127.0.0.1:3110"


def use_it_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block under "## Use it"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.S | re.M)


def commands(code: str) -> list[tuple[str, str | None]]:
    """(command, the answer shown after it or None); backslash continuations and quoted
    strings over several lines joined."""
    found: list[tuple[str, str | None]] = []
    pending = ""
    for line in code.replace("\\\n", " ").splitlines():
        if pending:
            line, pending = f"{pending}\n{line}", ""
        elif line.startswith("# ") and found and found[-1][1] is None:
            found[-1] = (found[-1][0], line[2:])
            continue
        if not line.strip():
            continue
        try:
            shlex.split(line)
        except ValueError:  # a quote still open: the command goes on
            pending = line
            continue
        found.append((line, None))
    assert not pending, f"unclosed quote in: {pending}"
    return found


def scaled(text: str, flight_uri: str, http_uri: str) -> str:
    return (text.replace("500000", str(ROWS)).replace("500,000", f"{ROWS:,}")
            .replace(DEFAULT_FLIGHT, flight_uri).replace(DEFAULT_HTTP, http_uri))


def shape(answer: str) -> str:
    """An answer with its sizes, byte counts, times and digests masked."""
    answer = re.sub(r"\d+(\.\d+)? (B|kB|MB|GB)\b", "<size>", answer)
    answer = re.sub(r"[\d,]+ bytes", "<n> bytes", answer)
    answer = re.sub(r"\(\d+(\.\d+)? s\)", "(<time>)", answer)
    return re.sub(r"sha256 [0-9a-f]{16}…", "sha256 <digest>", answer)


def shell_env(tmp_path: Path, flight_uri: str) -> dict[str, str]:
    """``flight-lake`` as this checkout, ``curl`` failing on HTTP errors, the live server."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = f'#!/bin/sh\nexec "{sys.executable}" -m flight_lake "$@"\n'
    (bin_dir / "flight-lake").write_text(launcher)
    (bin_dir / "curl").write_text('#!/bin/sh\nexec /usr/bin/curl --fail-with-body -sS "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_LAKE_")},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")]),
            "FLIGHT_LAKE_SERVER": flight_uri}


def test_the_section_starts_with_sample_data() -> None:
    language, code = use_it_blocks()[0]
    assert language == "bash"
    assert commands(code)[0][0].startswith("flight-lake sample workers ")


def test_use_it_runs_as_written(serve_process: Callable[..., ServeProcess],
                                tmp_path: Path) -> None:
    running = serve_process()
    flight_uri, http_uri = running.flight_uri, running.wait_for("server_started")["http"]
    env = shell_env(tmp_path, flight_uri)
    ran = 0
    for language, code in use_it_blocks():
        code = scaled(code, flight_uri, http_uri)
        if language == "python":
            result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            ran += 1
            continue
        assert language == "bash"
        for command, answer in commands(code):
            result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            if answer is not None:
                assert shape(result.stdout.strip()) == shape(answer), command
            ran += 1
    assert ran >= 12
    catalog = {event["dataset"] for event in running.events()
               if event.get("event") == "ingest_done"}
    assert catalog == {"workers_500k", "workers_copy"}
    unchanged = [(e["dataset"], e["mode"]) for e in running.events()
                 if e.get("event") == "ingest_unchanged"]
    # the second `flight-lake ingest`, and the .gz of the same CSV: the same content
    assert unchanged == [("workers_500k", "create"), ("workers_copy", "replace")]
