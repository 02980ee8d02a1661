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
from tests.support import error_body, make_settings

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
