"""`flight-lake serve` as a user runs it: a real process, signals, dropped clients, bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from tests.support import (
    REPO,
    S3_KEY,
    S3_REGION,
    S3_SECRET,
    ServeProcess,
    action,
    make_bucket,
    put_csv,
    wait_until,
)

pytestmark = pytest.mark.slow  # each test starts `flight-lake serve` processes

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
            time.sleep(0.05)  # pacing, not waiting: the upload is still going when stopped

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
        from flight_lake_client.protocol import CHUNK_SCHEMA as schema
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


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "FLIGHT_LAKE_STORAGE__URI": f"s3://{bucket}/lake",
        "FLIGHT_LAKE_STORAGE__ENDPOINT_URL": endpoint,
        "FLIGHT_LAKE_STORAGE__ACCESS_KEY_ID": S3_KEY,
        "FLIGHT_LAKE_STORAGE__SECRET_ACCESS_KEY": S3_SECRET,
        "FLIGHT_LAKE_STORAGE__PROBE_SECONDS": "0",
    }


def test_missing_bucket_stops_startup_in_one_line(tmp_path: Path, s3_endpoint: str) -> None:
    make_bucket(s3_endpoint)  # resets moto: "absent" does not exist
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_LAKE_")}
    result = subprocess.run(
        [sys.executable, "-m", "flight_lake", "serve", "--flight-port", "0", "--http-port", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**env, **s3_env(s3_endpoint, "absent")},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"flight-lake: bucket 'absent' does not exist at {s3_endpoint}")
    assert "--create-bucket" in lines[0]


def test_create_bucket_then_health_says_unreachable_once_it_is_gone(
    s3_endpoint: str, serve_process: StartServe
) -> None:
    make_bucket(s3_endpoint)
    running = serve_process("--create-bucket", env=s3_env(s3_endpoint, "made"))
    http_uri = running.wait_for("server_started")["http"]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEY,
                      aws_secret_access_key=S3_SECRET, region_name=S3_REGION)
    s3.head_bucket(Bucket="made")
    healthy = httpx.get(f"{http_uri}/health", timeout=30)
    assert healthy.status_code == 200
    assert healthy.json()["storage"]["status"] == "ok"
    s3.delete_bucket(Bucket="made")  # empty: the start-up probe removed its object
    sick = httpx.get(f"{http_uri}/health", timeout=30)
    assert sick.status_code == 503
    body = sick.json()
    assert body["status"] == "storage_unreachable"
    assert body["storage"]["status"] == "unreachable" and body["storage"]["detail"]
    with flight.connect(running.flight_uri) as client:
        assert action(client, "health")["storage"]["status"] == "unreachable"
    assert running.stop() == 0


@pytest.mark.parametrize("taken", ["flight", "http"])
def test_a_port_in_use_stops_startup_with_one_line_naming_it(
        server: Server, tmp_path: Path, taken: str) -> None:
    port = server.flight_port if taken == "flight" else server.http_port
    assert port is not None
    other = "--http-port" if taken == "flight" else "--flight-port"
    result = subprocess.run(
        [sys.executable, "-m", "flight_lake", "serve", f"--{taken}-port", str(port),
         other, "0", "--storage", str(tmp_path / "other")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")])})
    assert result.returncode == 2, result.stderr
    what = "Flight" if taken == "flight" else "HTTP"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"flight-lake: cannot listen for {what} on 127.0.0.1:{port}: ")
    assert "in use" in last
    assert "Traceback" not in result.stderr
