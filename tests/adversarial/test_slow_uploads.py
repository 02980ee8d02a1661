"""Finding 2: slow uploaders no longer lock out every ingest.

Clients that stall or send a byte at a time held all ingest slots for as long as they
liked. Each upload now has an idle timeout (HTTP) and a minimum rate over a window (HTTP
and Flight); the slot is released and the slow client gets a ``timeout`` error.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import CHUNK_SCHEMA, error_body, make_settings, put_csv, wait_until


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("slow_uploads")
    settings = make_settings(
        StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
        ingest={"max_concurrent_ingests": 2, "upload_idle_seconds": 1.0,
                "upload_min_bytes_per_second": 1000, "upload_rate_window_seconds": 1.5})
    with Server(settings) as running:
        yield running


def slow_http_upload(server: Server, byte_every: float | None) -> tuple[int, dict]:
    """POST a CSV whose body stalls (``None``) or trickles a byte every ``byte_every`` s."""
    assert server.http_port is not None
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/ingest?name=slow HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: text/csv\r\nContent-Length: 100000\r\n\r\na,b\n")
        sock.settimeout(0.05 if byte_every else 30)
        answer = b""
        for _ in range(2000):
            try:
                answer += sock.recv(4096)
                if b"\r\n\r\n" in answer:
                    break
            except TimeoutError:
                if byte_every:
                    time.sleep(byte_every)
                    sock.sendall(b"1")
        sock.settimeout(5)
        while answer.count(b"}") == 0:
            answer += sock.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def ingests_running(server: Server) -> int:
    return int(httpx.get(f"{server.http_uri}/health", timeout=10).json()["ingests_running"])


@pytest.mark.parametrize(("byte_every", "setting"), [(None, "upload_idle_seconds"),
                                                     (0.1, "upload_min_bytes_per_second")])
def test_a_stalled_or_trickling_http_upload_gives_its_slot_back(
        server: Server, byte_every: float | None, setting: str) -> None:
    results: list[tuple[int, dict]] = []
    slow = [threading.Thread(target=lambda: results.append(slow_http_upload(server, byte_every)))
            for _ in range(2)]
    for thread in slow:
        thread.start()
    for thread in slow:
        thread.join(30)
    assert [status for status, _ in results] == [504, 504], results
    assert all(body["error"] == "timeout" and setting in body["detail"] for _, body in results)
    assert ingests_running(server) == 0
    answer = httpx.post(f"{server.http_uri}/v1/ingest", params={"name": "fine"},
                        content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}, timeout=30)
    assert answer.status_code == 200, answer.text


def test_a_trickling_flight_upload_gives_its_slot_back(server: Server) -> None:
    command = {"op": "ingest", "name": "trickle", "format": "csv"}
    with flight.connect(server.flight_uri) as client:
        writer, reader = client.do_put(
            flight.FlightDescriptor.for_command(json.dumps(command)), CHUNK_SCHEMA)
        with pytest.raises(flight.FlightError) as caught:
            writer.write_batch(pa.record_batch([pa.array([b"a,b\n"], pa.binary())],
                                               CHUNK_SCHEMA))
            for _ in range(100):  # 10 s at most; the window is 1.5 s
                time.sleep(0.1)
                writer.write_batch(pa.record_batch([pa.array([b"1"], pa.binary())],
                                                   CHUNK_SCHEMA))
            writer.done_writing()
            reader.read()
        body = error_body(caught.value)
        assert body["error"] == "timeout" and "upload_min_bytes_per_second" in body["detail"]
    deadline = time.monotonic() + 10
    while ingests_running(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ingests_running(server) == 0


def test_a_stalled_flight_upload_gives_its_slot_back(server: Server) -> None:
    """Two DoPuts send one batch each and stop sending (connection open): both slots come
    back after ``ingest.upload_idle_seconds``, nothing is committed, and each stalled
    client gets ``timeout`` when it wakes up."""
    clients = [flight.connect(server.flight_uri) for _ in range(2)]
    stalled: list[tuple[flight.FlightStreamWriter, flight.FlightMetadataReader]] = []
    try:
        for number, client in enumerate(clients):
            command = {"op": "ingest", "name": f"stalled_{number}", "format": "csv"}
            writer, reader = client.do_put(
                flight.FlightDescriptor.for_command(json.dumps(command)), CHUNK_SCHEMA)
            writer.write_batch(pa.record_batch([pa.array([b"a,b\n1,2\n"], pa.binary())],
                                               CHUNK_SCHEMA))
            stalled.append((writer, reader))  # and nothing more: the client stalls
        wait_until(lambda: ingests_running(server) == 0, 8, "the stalled slots' release")
        with flight.connect(server.flight_uri) as other:
            assert put_csv(other, "after_stall", b"a,b\n1,2\n")["row_count"] == 1
        for writer, _ in stalled:
            writer.done_writing()  # the client wakes up: its call ends with the error
            with pytest.raises(flight.FlightError) as caught:
                writer.close()
            body = error_body(caught.value)
            assert body["error"] == "timeout" and "upload_idle_seconds" in body["detail"]
        names = {m["name"] for m in json.loads(
            next(iter(clients[0].do_action(flight.Action("catalog.list", b"{}")))).body
            .to_pybytes())}
        assert "stalled_0" not in names and "stalled_1" not in names
    finally:
        for writer, _ in stalled:  # a failed check must not leave a call open
            with contextlib.suppress(flight.FlightError):
                writer.close()
        for client in clients:
            client.close()


def test_one_client_address_cannot_take_every_slot(tmp_path: Path) -> None:
    settings = make_settings(
        StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
        ingest={"max_concurrent_ingests": 2, "max_concurrent_ingests_per_client": 1})
    with Server(settings) as running, flight.connect(running.flight_uri) as client:
        command = {"op": "ingest", "name": "held", "format": "csv"}
        writer, _ = client.do_put(
            flight.FlightDescriptor.for_command(json.dumps(command)), CHUNK_SCHEMA)
        try:
            writer.write_batch(pa.record_batch([pa.array([b"a,b\n1,2\n"], pa.binary())],
                                               CHUNK_SCHEMA))
            wait_until(lambda: ingests_running(running) == 1, 10, "the held upload")
            with pytest.raises(flight.FlightUnavailableError) as caught:
                put_csv(client, "second", b"a,b\n1,2\n")  # a slot is free, not for 127.0.0.1
            body = error_body(caught.value)
            assert body["error"] == "busy"
            assert "max_concurrent_ingests_per_client" in body["detail"]
            answer = httpx.post(f"{running.http_uri}/v1/ingest", params={"name": "third"},
                                content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"},
                                timeout=30)
            assert answer.status_code == 503 and answer.json()["error"] == "busy"
            writer.done_writing()
        finally:
            writer.close()
        assert put_csv(client, "second", b"a,b\n1,2\n")["row_count"] == 1
