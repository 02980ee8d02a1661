"""Finding 3: SQL text and request sizes are capped, and parsing runs under the deadline.

A huge ``IN (…)`` list or Flight command cost seconds and gigabytes before any limit
applied. Each cap is a setting, refused as ``too_large`` before anything is parsed; the
guard's verdict cache holds digests, never the texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.flight as flight
import pytest

from flight_lake.catalog import Catalog
from flight_lake.errors import QueryTimeout, TooLarge
from flight_lake.query import QueryEngine
from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from tests.support import error_body, make_settings

KiB = 1024


def in_list(values: int) -> str:
    return "SELECT count(*) AS n FROM range(10) t(x) WHERE x IN (" + ",".join(
        str(i) for i in range(values)) + ")"


@pytest.fixture
def server(local_storage_settings: StorageSettings, tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(local_storage_settings, tmp_path,
                             flight={"max_command_bytes": 64 * KiB},
                             http={"max_json_body_bytes": 64 * KiB},
                             query={"max_sql_bytes": 16 * KiB})
    with Server(settings) as running:
        yield running


def test_sql_over_the_cap_is_too_large_on_both_edges(server: Server) -> None:
    sql = in_list(5000)  # ~24 KiB: under the body caps, over max_sql_bytes
    assert 16 * KiB < len(sql) < 64 * KiB
    with flight.connect(server.flight_uri) as client:
        with pytest.raises(flight.FlightServerError) as caught:
            client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"sql": sql})))
        body = error_body(caught.value)
        assert body["error"] == "too_large" and "max_sql_bytes" in body["detail"]
        with pytest.raises(flight.FlightServerError) as caught:
            client.do_get(flight.Ticket(json.dumps({"sql": sql}).encode())).read_all()
        assert error_body(caught.value)["error"] == "too_large"
        small = flight.FlightDescriptor.for_command(json.dumps({"sql": in_list(10)}))
        info = client.get_flight_info(small)
        assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"n": 10}]
    answer = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": sql}, timeout=30)
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert "max_sql_bytes" in answer.json()["detail"]


def test_flight_commands_tickets_and_actions_over_the_cap(server: Server) -> None:
    padding = "x" * (200 * KiB)
    with flight.connect(server.flight_uri) as client:
        calls = [
            lambda: client.get_flight_info(flight.FlightDescriptor.for_command(
                json.dumps({"sql": "SELECT 1", "pad": padding}))),
            lambda: client.do_get(flight.Ticket(json.dumps({"sql": padding}).encode())).read_all(),
            lambda: list(client.do_action(flight.Action(
                "catalog.get", json.dumps({"name": padding}).encode()))),
        ]
        for call in calls:
            with pytest.raises(flight.FlightServerError) as caught:
                call()
            body = error_body(caught.value)
            assert body["error"] == "too_large", body
            assert "flight.max_command_bytes" in body["detail"]


def test_http_json_body_cap_is_a_setting(server: Server) -> None:
    body = json.dumps({"sql": "SELECT 1", "pad": "x" * (100 * KiB)})
    answer = httpx.post(f"{server.http_uri}/v1/sql", content=body, timeout=30)
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"
    assert "http.max_json_body_bytes" in answer.json()["detail"]


def test_parsing_runs_under_the_deadline(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    settings = make_settings(local_storage_settings, tmp_path,
                             query={"timeout_seconds": 30, "max_sql_bytes": 4 * 1024 * KiB})
    storage = Storage.from_settings(settings.storage)
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    guard = engine._guard
    check = guard.check
    watched: list[bool] = []

    def spying_check(sql, watch=None):  # the real check, noting whether a clock watches it
        watched.append(watch is not None)
        return check(sql, watch)

    guard.check = spying_check  # type: ignore[method-assign]
    try:
        assert engine.execute(in_list(10)).read_all().to_pylist() == [{"n": 10}]
        assert engine.schema(in_list(11)).names == ["n"]
        assert watched == [True, True]
    finally:
        engine.close()
    # and a parse that outlives the deadline ends as a timeout
    settings = make_settings(local_storage_settings, tmp_path,
                             query={"timeout_seconds": 0.05, "max_sql_bytes": 4 * 1024 * KiB})
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        with pytest.raises(QueryTimeout):
            engine.execute(in_list(100_000)).read_all()  # ~0.6 MB of SQL
        assert engine.execute(in_list(10)).read_all().to_pylist() == [{"n": 10}]
    finally:
        engine.close()


def test_the_guard_cache_keeps_digests_not_texts(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    settings = make_settings(local_storage_settings, tmp_path,
                             query={"max_sql_bytes": 1024 * KiB})
    storage = Storage.from_settings(settings.storage)
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        for values in range(14_000, 14_005):  # 5 distinct texts of ~72 KB
            engine.execute(in_list(values)).read_all()
        engine.execute(in_list(10)).read_all()  # and a short one
        cache = engine._guard._cache
        assert 1 <= len(cache) <= 6
        assert all(isinstance(key, bytes) and len(key) <= 64 for key in cache)
        retained = sum(len(getattr(verdict, "text", "") or "") for verdict in cache.values())
        assert retained < 20 * 1024, retained
    finally:
        engine.close()


def test_too_large_is_refused_before_parsing(
    local_storage_settings: StorageSettings, tmp_path: Path
) -> None:
    settings = make_settings(local_storage_settings, tmp_path, query={"max_sql_bytes": 1024})
    storage = Storage.from_settings(settings.storage)
    engine = QueryEngine(storage, Catalog(storage), settings).start()
    try:
        with pytest.raises(TooLarge, match="max_sql_bytes"):
            engine.schema("SELECT '" + "x" * 2000 + "'")
        assert len(engine._guard._cache) == 0
    finally:
        engine.close()
