"""`flight-lake serve` as a user runs it: a real process, signals, dropped clients, bad config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest

from tests.flight_helpers import action, put_csv


class ServeProcess:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.stderr_path = cwd / "serve.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flight_lake", "serve", "--flight-port", "0",
             "--http-port", "0", *args],
            # stderr is a file, not a terminal: the default log format must be JSON lines.
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("wb"),
            env={k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_LAKE_")},
        )
        self.flight_uri = self._wait_for("server_started")["flight"]

    def events(self) -> list[dict]:
        found = []
        for line in self.stderr_path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def _wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.events():
                if entry.get("event") == event:
                    return entry
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.stderr_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"no {event} event: {self.stderr_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    running = ServeProcess(tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_no_configuration_then_stop(tmp_path: Path, sig: int) -> None:
    running = ServeProcess(tmp_path)
    try:
        with flight.connect(running.flight_uri) as client:
            put_csv(client, "first", b"a\n1\n")
            assert action(client, "health")["storage"]["backend"] == "local"
        assert (tmp_path / "lake" / "datasets" / "first").is_dir()
        assert running.stop(sig) == 0
        assert any(e.get("event") == "server_stopped" for e in running.events())
    finally:
        if running.process.poll() is None:
            running.process.kill()


def test_upload_cut_off_by_shutdown_leaves_nothing(tmp_path: Path, serve: ServeProcess) -> None:
    with flight.connect(serve.flight_uri) as client:
        put_csv(client, "kept", b"a\n1\n")
    sent = threading.Event()
    outcome: list[BaseException | dict] = []

    def endless() -> Iterator[bytes]:
        yield b"a,b\n"
        while True:
            yield b"1,2\n" * 1000
            sent.set()
            time.sleep(0.05)

    def upload() -> None:
        try:
            with flight.connect(serve.flight_uri) as client:
                outcome.append(put_csv(client, "cut", endless()))
        except BaseException as exc:
            outcome.append(exc)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert sent.wait(10)
    assert serve.stop() == 0
    uploader.join(30)
    assert outcome and isinstance(outcome[0], flight.FlightError)

    restarted = ServeProcess(tmp_path)
    try:
        with flight.connect(restarted.flight_uri) as client:
            assert [m["name"] for m in action(client, "catalog.list")] == ["kept"]
        assert not (tmp_path / "lake" / "datasets" / "cut").exists() or not any(
            (tmp_path / "lake" / "datasets" / "cut").rglob("*.parquet"))
        assert not (tmp_path / "lake" / "_catalog" / "manifests" / "cut").exists()
    finally:
        restarted.stop()


def test_dropped_client_leaves_nothing(tmp_path: Path, serve: ServeProcess) -> None:
    script = textwrap.dedent(f"""
        import json, os, pyarrow as pa, pyarrow.flight as flight
        schema = pa.schema([("chunk", pa.binary())])
        client = flight.connect({serve.flight_uri!r})
        command = json.dumps({{"op": "ingest", "name": "dropped", "format": "csv"}})
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(command), schema)
        writer.write_batch(pa.record_batch([pa.array([b"a,b\\n" + b"1,2\\n" * 50000])], schema))
        os._exit(3)  # the client dies mid-upload
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 3
    with flight.connect(serve.flight_uri) as client:
        deadline = time.monotonic() + 20
        while action(client, "health")["ingests_running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert action(client, "health")["ingests_running"] == 0
        assert action(client, "catalog.list") == []
    leftovers = list((tmp_path / "lake").rglob("*.parquet"))
    assert leftovers == []


def test_bad_setting_stops_startup_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[ingest]\nmax_concurrent_ingests = -3\n")
    result = subprocess.run(
        [sys.executable, "-m", "flight_lake", "serve", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "ingest.max_concurrent_ingests" in result.stderr
    assert not (tmp_path / "lake").exists()
