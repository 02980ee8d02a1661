"""`flight-lake serve` as a user runs it: a real process, signals, dropped clients, bad config."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest

from tests.support import ServeProcess, action, put_csv, wait_until

StartServe = Callable[..., ServeProcess]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_no_configuration_then_stop(
        tmp_path: Path, serve_process: StartServe, sig: int) -> None:
    running = serve_process()
    with flight.connect(running.flight_uri) as client:
        put_csv(client, "first", b"a\n1\n")
        assert action(client, "health")["storage"]["backend"] == "local"
    assert (tmp_path / "lake" / "datasets" / "first").is_dir()
    assert running.stop(sig) == 0
    assert any(e.get("event") == "server_stopped" for e in running.events())


def test_upload_cut_off_by_shutdown_leaves_nothing(
        tmp_path: Path, serve_process: StartServe) -> None:
    serve = serve_process()
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

    restarted = serve_process()
    with flight.connect(restarted.flight_uri) as client:
        assert [m["name"] for m in action(client, "catalog.list")] == ["kept"]
    assert not (tmp_path / "lake" / "datasets" / "cut").exists() or not any(
        (tmp_path / "lake" / "datasets" / "cut").rglob("*.parquet"))
    assert not (tmp_path / "lake" / "_catalog" / "manifests" / "cut").exists()
    assert restarted.stop() == 0


def test_dropped_client_leaves_nothing(tmp_path: Path, serve_process: StartServe) -> None:
    serve = serve_process()
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
        wait_until(lambda: action(client, "health")["ingests_running"] == 0, 20,
                   "the dropped upload cleaned up")
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
