"""Finding 4: clients that stop reading cannot pin memory and threads without bound.

128 DoGets that read one batch and stopped held 128 threads and 2.3 GB. Open results are
now bounded (``query.max_open_results``): past it a read is refused as ``busy``, and a
client that goes away gives its place back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import error_body, make_settings, wait_until

LONG = json.dumps({"sql": "SELECT x, x * 2 AS y FROM range(100000000) t(x)"}).encode()


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("unread_streams")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             query={"max_open_results": 3, "batch_rows": 1000})
    with Server(settings) as running:
        yield running


def test_open_results_are_bounded_and_released(server: Server) -> None:
    clients = [flight.connect(server.flight_uri) for _ in range(3)]
    readers = []
    for client in clients:
        reader = client.do_get(flight.Ticket(LONG))
        reader.read_chunk()  # one batch, then stop reading
        readers.append(reader)
    with flight.connect(server.flight_uri) as extra:
        with pytest.raises(flight.FlightUnavailableError) as caught:
            extra.do_get(flight.Ticket(LONG)).read_chunk()
        assert error_body(caught.value)["error"] == "busy"
        answer = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": "SELECT 1 AS x"},
                            timeout=30)
        assert answer.status_code == 503 and answer.json()["error"] == "busy"
        for reader, client in zip(readers, clients, strict=True):
            reader.cancel()
            client.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                table = extra.do_get(flight.Ticket(b'{"sql": "SELECT 1 AS x"}')).read_all()
                break
            except flight.FlightUnavailableError:
                time.sleep(0.2)
        assert table.to_pylist() == [{"x": 1}]


@pytest.fixture
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("unread_deadline")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             query={"max_open_results": 2, "batch_rows": 1000,
                                    "timeout_seconds": 1.0})
    with Server(settings) as running:
        yield running


def reads_running(server: Server) -> int:
    return int(httpx.get(f"{server.http_uri}/health", timeout=10).json()["reads_running"])


def test_the_deadline_ends_a_stream_its_client_stopped_reading(short_server: Server) -> None:
    """Both result places are taken by clients that read one batch and stop (connections
    open); at query.timeout_seconds their DuckDB results are closed and the places come
    back, and a stopped client that reads on gets ``timeout``."""
    clients = [flight.connect(short_server.flight_uri) for _ in range(2)]
    readers: list[flight.FlightStreamReader] = []
    try:
        for client in clients:
            reader = client.do_get(flight.Ticket(LONG))
            reader.read_chunk()  # one batch, then stop reading
            readers.append(reader)
        wait_until(lambda: reads_running(short_server) == 0, 8,
                   "the stopped streams' release")
        with flight.connect(short_server.flight_uri) as other:
            table = other.do_get(flight.Ticket(b'{"sql": "SELECT 1 AS x"}')).read_all()
            assert table.to_pylist() == [{"x": 1}]
        with pytest.raises(flight.FlightTimedOutError) as caught:
            for _ in range(10_000):  # what gRPC buffered, then the error; never the 10^5
                readers[0].read_chunk()
        assert error_body(caught.value)["error"] == "timeout"
    finally:
        for reader in readers:
            reader.cancel()
        for client in clients:
            client.close()
