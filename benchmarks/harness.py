"""What the gate and the benchmark runner share: fixtures, moto, a server subprocess, stats.

- ``fixture(rows)``: the generated CSV, cached (and re-used only if its hash still matches).
- ``MotoS3``: moto's S3 server on a free loopback port, with a boto3 client.
- ``LakeServer``: ``flight-lake serve`` as a subprocess on free ports, its memory sampled.
- ``machine()``: cores, memory and versions, for the reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from benchmarks import generate

REPO = Path(__file__).resolve().parent.parent
S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"


class GateFailure(Exception):
    """An assertion of the gate (or a step of a benchmark) did not hold."""


def check(condition: bool, message: str) -> None:
    """``assert`` that survives ``python -O`` and reads as a gate step."""
    if not condition:
        raise GateFailure(message)


# --- the fixture ------------------------------------------------------------------------


def cache_dir() -> Path:
    named = os.environ.get("FLIGHT_LAKE_BENCH_CACHE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flight_lake" / "bench"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def fixture(
    rows: int | None = generate.DEFAULT_ROWS,
    *,
    target_bytes: int | None = None,
    seed: int = generate.DEFAULT_SEED,
    directory: Path | None = None,
) -> Path:
    """The generated CSV in the cache, made if missing or if its size or hash changed."""
    directory = directory or cache_dir()
    stem = f"workers_{rows}" if rows is not None else f"workers_{target_bytes}b"
    path = directory / f"{stem}_s{seed}_v{generate.GENERATOR_VERSION}.csv"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size and meta.get("sha256") == _sha256(path):
            return path
    made = generate.write_csv(path, rows, target_bytes=target_bytes, seed=seed)
    meta = {"rows": made.rows, "bytes": made.bytes, "sha256": made.sha256, "seed": seed}
    meta_path.write_text(json.dumps(meta))
    return path


def fixture_meta(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.with_suffix(".json").read_text()))


WIDE_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def wide_fixture(columns: int, rows: int, seed: int = generate.DEFAULT_SEED) -> Path:
    """A deterministic CSV of ``columns`` columns (in turn integers, decimals, words and
    dates) and ``rows`` rows, in the cache (made once)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = cache_dir() / f"wide_{columns}x{rows}_s{seed}.csv"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    random = np.random.default_rng(seed)
    words = pa.array(WIDE_WORDS)
    arrays: list[pa.Array] = []
    for index in range(columns):
        kind = index % 4
        if kind == 0:
            arrays.append(pa.array(random.integers(0, 1_000_000, rows)))
        elif kind == 1:
            arrays.append(pa.array(np.round(random.random(rows) * 1000, 2)))
        elif kind == 2:
            arrays.append(words.take(pa.array(random.integers(0, len(WIDE_WORDS), rows))))
        else:
            days = pa.array(random.integers(10_000, 20_000, rows).astype("int32"))
            arrays.append(days.cast(pa.date32()))
    table = pa.table(arrays, names=[f"c{index}" for index in range(columns)])
    partial = path.with_suffix(f".partial-{os.getpid()}")
    pacsv.write_csv(table, partial)
    partial.rename(path)
    return path


# --- ports, moto ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoS3:
    """moto's S3 server in this process on a free loopback port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def __enter__(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def storage_env(self, bucket: str, prefix: str = "lake") -> dict[str, str]:
        """The server's storage settings, as environment variables."""
        return {
            "FLIGHT_LAKE_STORAGE__URI": f"s3://{bucket}/{prefix}",
            "FLIGHT_LAKE_STORAGE__ENDPOINT_URL": self.endpoint,
            "FLIGHT_LAKE_STORAGE__REGION": S3_REGION,
            "FLIGHT_LAKE_STORAGE__ACCESS_KEY_ID": S3_KEY,
            "FLIGHT_LAKE_STORAGE__SECRET_ACCESS_KEY": S3_SECRET,
        }

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
        return objects


# --- the server as a subprocess ---------------------------------------------------------


class MemorySampler:
    """Samples a process tree's resident memory in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def rss(self) -> int:
        try:
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            return int(total)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def reset_peak(self) -> int:
        """Start a new peak from now; return the current resident memory."""
        now = self.rss()
        self.peak = now
        return now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class LakeServer:
    """``flight-lake serve`` in a subprocess, on free loopback ports, logging to a file."""

    env: dict[str, str]
    workdir: Path
    log_path: Path = field(init=False)
    flight_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    memory: MemorySampler | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def flight_url(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "flight_lake", "serve", "--host", "127.0.0.1"]
        config = REPO / "conf" / "flight_lake.toml"
        if config.is_file():
            command += ["--config", str(config)]
        command += ["--flight-port", str(self.flight_port), "--http-port", str(self.http_port)]
        return command

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until ``/health`` answers; return the seconds that took."""
        self.flight_port, self.http_port = free_port(), free_port()
        env = {**os.environ, **self.env, "FLIGHT_LAKE_LOG__FORMAT": "json"}
        # The repo's own code, installed or not (the client package lives under clients/).
        paths = [str(REPO), str(REPO / "clients"), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.memory = MemorySampler(self.process.pid)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise GateFailure(
                    f"server exited with code {self.process.returncode} while starting\n"
                    + self.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/health", timeout=1.0).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.1)
        raise GateFailure(
            f"server did not answer /health within {timeout:.0f} s\n" + self.log_tail()
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL after ``timeout``; return the exit code."""
        if self.memory is not None:
            self.memory.close()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "server log (last lines):\n  " + "\n  ".join(tail)

    def __enter__(self) -> LakeServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="flight_lake_bench_"))
    try:
        yield path
    finally:
        if not keep:
            import shutil

            shutil.rmtree(path, ignore_errors=True)


# --- figures and the machine ------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (q=0.5 is the median)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    memory = psutil.virtual_memory().total
    packages = ("pyarrow", "duckdb", "flight-lake", "roapi", "adbc-driver-flightsql", "moto")
    return {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": f"{memory / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{name} {_version(name)}" for name in packages),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # The machine is shared: say how busy it was when the figures were taken.
        "load": "load average {:.2f} / {:.2f} / {:.2f} (1 / 5 / 15 min)".format(*os.getloadavg()),
    }


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=10, check=False)
    return result.stdout.strip()


def git_revision() -> str:
    try:
        revision = _git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision + (" (with uncommitted changes)" if dirty else "")


def write_section(section: str, start: str, end: str,
                  path: Path = REPO / "docs" / "BENCHMARKS.md") -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) into the report
    in place of its previous run, or at the end; the rest of the report stays."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
