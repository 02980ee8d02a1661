"""Finding 10: odd input gets a clear 4xx with the JSON body, never a 5xx or a dataset.

A body of NUL bytes became a dataset with a 100,000-character column name; a storage key
of 10,000 segments gave 502; the HTTP adapter read request heads of any size.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import error_body, make_settings, put_csv


@pytest.fixture
def server(local_storage_settings: StorageSettings, tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(local_storage_settings, tmp_path,
                             http={"max_header_bytes": 64 * 1024, "max_headers": 50})
    with Server(settings) as running:
        yield running


def _ingest(server: Server, name: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.http_uri}/v1/ingest", params={"name": name}, content=body,
                      headers={"Content-Type": "text/csv"}, timeout=30)


def test_header_names_that_are_not_text_are_refused(server: Server) -> None:
    for name, body in [("nuls", b"\x00" * 100_000),
                       ("nul_in_name", b"id,na\x00me\n1,2\n"),
                       ("long_name", b"id," + b"x" * 100_000 + b"\n1,2\n")]:
        answer = _ingest(server, name, body)
        assert answer.status_code == 400, (name, answer.text[:200])
        assert answer.json()["error"] == "invalid_input"
        assert answer.json().get("line", 1) == 1  # binary data is refused before any line
    with flight.connect(server.flight_uri) as client:
        with pytest.raises(flight.FlightServerError) as caught:
            put_csv(client, "nuls", b"\x00" * 100_000)
        assert error_body(caught.value)["error"] == "invalid_input"
    assert httpx.get(f"{server.http_uri}/v1/catalog", timeout=10).json() == []
    assert _ingest(server, "fine", b"id," + b"x" * 200 + b"\n1,2\n").status_code == 200


def test_a_storage_key_of_ten_thousand_segments_is_invalid_input(server: Server) -> None:
    key = "/".join(["a"] * 10_000)
    answer = httpx.get(f"{server.http_uri}/v1/storage/get/{key}", timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_input"
    answer = httpx.get(f"{server.http_uri}/v1/storage/list", params={"prefix": key}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_input"
    with flight.connect(server.flight_uri) as client:
        ticket = json.dumps({"dataset": "x", "key": key}).encode()
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(ticket)).read_all()
        assert error_body(caught.value)["error"] in ("invalid_input", "not_found")


def _raw_request(server: Server, head: bytes, *, endless: bool = False) -> bytes:
    """Send a request head (forever, with ``endless``) and return what the server says."""
    assert server.http_port is not None
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        try:
            sock.sendall(head)
            if endless:
                line = b"X-Filler: " + b"v" * 1000 + b"\r\n"
                for _ in range(50_000):  # 50 MB: far past the limit, if never answered
                    sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed on us: its answer is in the receive buffer
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def _status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_request_heads_are_bounded(server: Server) -> None:
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(60)) + b"\r\n"
    status, body = _status_and_body(_raw_request(server, many))
    assert status == 431 and body["error"] == "too_large" and "max_headers" in body["detail"]
    large = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 100_000 + b"\r\n\r\n"
    status, body = _status_and_body(_raw_request(server, large))
    assert status == 431 and "max_header_bytes" in body["detail"]
    status, body = _status_and_body(
        _raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\n", endless=True))
    assert status == 431
    # an ordinary request, with a body larger than the head limit, is untouched
    assert httpx.get(f"{server.http_uri}/health", headers={"X-Ok": "1"}).status_code == 200
    upload = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(10_000))
    assert len(upload) > 64 * 1024
    assert _ingest(server, "rows", upload).json()["row_count"] == 10_000


def test_a_non_utf8_path_descriptor_leaves_the_server_serving(server: Server) -> None:
    # The descriptor's path is a protobuf string: gRPC refuses invalid UTF-8 before any
    # server code runs, so no JSON body can be attached; the server must stay healthy.
    with flight.connect(server.flight_uri) as client:
        with pytest.raises(flight.FlightError):
            client.get_flight_info(flight.FlightDescriptor.for_path(b"\xff\xfe"))
        with pytest.raises(flight.FlightError) as caught:
            client.get_flight_info(flight.FlightDescriptor.for_path("caf\u00e9"))
        assert error_body(caught.value)["error"] == "invalid_input"
        results = list(client.do_action(flight.Action("health", b"{}")))
        assert json.loads(results[0].body.to_pybytes())["status"] == "ok"
