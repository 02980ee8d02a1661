"""The HTTP adapter, driven through httpx against a real uvicorn server on port 0.

Every route and every status code of docs/HTTP.md on local storage (the storage routes on
S3 too, through moto's server), plus the promises that are easy to break silently: results
stream in every format, uploads stream (a large upload does not grow the server's memory
with its size), an aborted upload leaves nothing behind, and the OpenAPI document matches
the routes.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake.errors import Unavailable
from flight_lake.http import streams
from flight_lake.http.answers import Error, Health, StorageListing
from flight_lake.http.listener import HttpServer, listening_socket
from flight_lake.http.routes import OPENAPI, create_app
from flight_lake.lake import Lake
from flight_lake.serve import Server
from flight_lake.settings import Settings, StorageSettings
from flight_lake_client import json_rows
from tests.support import ServeProcess, make_settings, wait_until

MiB = 1024 * 1024
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

PEOPLE_CSV = (
    b"id,name,state,zip,rate\n"
    b"1,Ada,IL,00501,21.5\n"
    b'2,"Lovelace, Ada",IL,60601,30.25\n'
    b'3,"She said ""hi""",WI,53703,19\n'
    b"4,Grace,NY,10001,44.75\n"
)


Serve = Callable[..., Server]


@contextlib.contextmanager
def running(serve: Serve, **options: object) -> Iterator[tuple[httpx.Client, Lake]]:
    """A server started by ``serve(**options)``, a client of its HTTP side, and its lake."""
    server = serve(**options)
    assert server.http_uri is not None and server.lake is not None
    with httpx.Client(base_url=server.http_uri, timeout=60) as client:
        yield client, server.lake


@pytest.fixture
def http(serve: Serve) -> Iterator[tuple[httpx.Client, Lake]]:
    with running(serve) as served:
        yield served


@pytest.fixture
def client(http: tuple[httpx.Client, Lake]) -> httpx.Client:
    return http[0]


@pytest.fixture(scope="module")
def people_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server per worker for the cases that only read or are refused: ``people`` is
    PEOPLE_CSV."""
    folder = tmp_path_factory.mktemp("http-shared")
    server = Server(make_settings(StorageSettings(uri=str(folder / "lake")), folder))
    server.start()
    try:
        assert server.http_uri is not None
        with httpx.Client(base_url=server.http_uri, timeout=60) as shared:
            assert ingest(shared, "people", PEOPLE_CSV).status_code == 200
            yield shared
    finally:
        server.stop()


def ingest(client: httpx.Client, name: str, data: bytes, mode: str = "create") -> httpx.Response:
    return client.post(
        "/v1/ingest", params={"name": name, "mode": mode},
        files={"file": (f"{name}.csv", data, "text/csv")},
    )


def sql(client: httpx.Client, text: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return client.post("/v1/sql", json={"sql": text}, headers=headers)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def workers_csv(rows: int, start: int = 0) -> bytes:
    lines = ["id,name,state,rate"]
    for n in range(start, start + rows):
        lines.append(f"{n},worker {n},{('IL', 'WI', 'NY')[n % 3]},{n % 50}.5")
    return ("\n".join(lines) + "\n").encode()


# -- health, OpenAPI, routing ------------------------------------------------------------


def test_health_reports_the_service_and_its_storage(http: tuple[httpx.Client, Lake]) -> None:
    client, lake = http
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["service"] == "flight_lake"
    assert body["storage"]["backend"] == lake.storage.backend
    assert body["datasets"] == 0
    assert response.headers["x-request-id"]


def test_openapi_describes_exactly_the_routes(people_client: httpx.Client) -> None:
    client = people_client
    served = client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(OPENAPI))
    routes = {}
    for route in create_app(_NoLake()).routes:  # type: ignore[arg-type]
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # type: ignore[attr-defined]
        methods = {m.lower() for m in route.methods or ()} - {"head"}  # type: ignore[attr-defined]
        routes[path] = methods
    described = {path: set(item) for path, item in served["paths"].items()}
    assert routes == described


class _NoLake:
    draining = False


def test_answers_are_what_the_openapi_models_say(client: httpx.Client) -> None:
    """The document is generated from these models, so the answers must parse with them."""
    manifest = ingest(client, "people", PEOPLE_CSV).json()
    described = OPENAPI["components"]["schemas"]["Manifest"]
    assert set(manifest) == set(described["properties"]) == set(described["required"])
    assert [m["name"] for m in client.get("/v1/catalog").json()] == ["people"]
    Health.model_validate(client.get("/health").json())
    listing = StorageListing.model_validate(client.get("/v1/storage/list").json())
    assert any(item.key.endswith(".parquet") for item in listing.objects)
    refused = Error.model_validate(client.get("/v1/catalog/nobody").json())
    assert refused.error == "not_found"


def test_a_draining_lake_refuses_new_work(http: tuple[httpx.Client, Lake]) -> None:
    client, lake = http
    assert sql(client, "SELECT 1 AS one").json() == [{"one": 1}]
    assert client.get("/health").json()["status"] == "ok"
    lake.drain()
    assert lake.state == "draining"
    assert client.get("/health").status_code == 503
    assert client.get("/health").json()["status"] == "draining"
    assert_error(sql(client, "SELECT 1"), 503, "unavailable")
    assert_error(ingest(client, "late", b"a\n1\n"), 503, "unavailable")


def test_unknown_route_and_method_get_json_errors(people_client: httpx.Client) -> None:
    client = people_client
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    response = client.delete("/v1/catalog")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    assert_error(client.get("/v1/sql"), 405, "method_not_allowed")


def test_every_request_is_logged_once(client: httpx.Client) -> None:
    def requests_logged() -> list:
        return [entry for entry in logs if entry["event"] == "http_request"]

    with capture_logs() as logs:
        client.get("/health")
        client.get("/v1/catalog/nope")
        # The event is written once the last byte is sent, so it may trail the response;
        # a third request's event, once seen, comes after any (wrong) extra one of the two.
        client.get("/v1/catalog/last")
        wait_until(lambda: len(requests_logged()) >= 3, 5, "three request events")
    events = requests_logged()[:-1]
    assert requests_logged()[-1]["path"] == "/v1/catalog/last"
    assert [(e["method"], e["path"], e["status"]) for e in events] == [
        ("GET", "/health", 200),
        ("GET", "/v1/catalog/nope", 404),
    ]
    assert all(e["seconds"] >= 0 for e in events)


# -- ingest --------------------------------------------------------------------------------


def test_multipart_ingest_returns_the_manifest_and_sql_counts_it(
    http: tuple[httpx.Client, Lake],
) -> None:
    client, lake = http
    response = ingest(client, "people", PEOPLE_CSV)
    assert response.status_code == 200, response.text
    manifest = response.json()
    assert manifest["name"] == "people"
    assert manifest["row_count"] == 4
    assert manifest["objects"]
    assert all(o["key"].startswith("datasets/people/") for o in manifest["objects"])
    assert {c["name"]: c["type"] for c in manifest["schema"]}["zip"] == "string"

    counted = sql(client, "SELECT count(*) FROM people")
    assert counted.status_code == 200
    assert counted.headers["content-type"].startswith("application/json")
    assert counted.content == b'[{"count_star()":4}]'
    assert lake.catalog.get("people").row_count == 4


def test_raw_body_ingest_streams_a_chunked_upload(client: httpx.Client) -> None:
    data = workers_csv(20_000)

    def pieces() -> Iterator[bytes]:
        for offset in range(0, len(data), 7_919):  # odd sizes: rows split across chunks
            yield data[offset : offset + 7_919]

    response = client.post(
        "/v1/ingest?name=workers&mode=create", content=pieces(),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["row_count"] == 20_000
    by_state = sql(client, "SELECT state, count(*) AS n FROM workers GROUP BY state ORDER BY state")
    assert by_state.json() == [
        {"state": "IL", "n": 6667}, {"state": "NY", "n": 6666}, {"state": "WI", "n": 6667},
    ]


def test_ingest_modes_append_replace_and_conflict(client: httpx.Client) -> None:
    assert ingest(client, "w", workers_csv(10)).status_code == 200
    appended = ingest(client, "w", workers_csv(5, start=10), mode="append")
    assert appended.status_code == 200, appended.text
    assert appended.json()["row_count"] == 15
    replaced = ingest(client, "w", workers_csv(3), mode="replace")
    assert replaced.json()["row_count"] == 3
    other_schema = b"a,b\nx,y\n"
    body = assert_error(ingest(client, "w", other_schema), 409, "conflict")
    assert "w" in body["detail"]
    assert_error(ingest(client, "nobody", workers_csv(2), mode="append"), 404, "not_found")


def test_bad_csv_is_a_400_naming_the_line(http: tuple[httpx.Client, Lake]) -> None:
    client, lake = http
    bad = b"a,b,c\n1,2,3\n4,5,6\n7,8\n"
    body = assert_error(ingest(client, "broken", bad), 400, "invalid_input")
    assert body["line"] == 4
    assert_error(ingest(client, "empty", b""), 400, "invalid_input")
    assert lake.catalog.list() == []
    assert lake.storage.list("datasets") == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/v1/ingest", "missing query parameter 'name'"),
        ("/v1/ingest?name=Bad-Name", "invalid dataset name"),
        ("/v1/ingest?name=ok&mode=upsert", "invalid mode"),
    ],
)
def test_ingest_parameters_are_checked(people_client: httpx.Client, url: str, code: str) -> None:
    client = people_client
    response = client.post(url, files={"file": ("x.csv", b"a\n1\n", "text/csv")})
    assert code in assert_error(response, 400, "invalid_input")["detail"]


def test_malformed_multipart_bodies_are_400(http: tuple[httpx.Client, Lake]) -> None:
    client, lake = http
    post = client.post
    no_boundary = post("/v1/ingest?name=m", content=b"x",
                       headers={"Content-Type": "multipart/form-data"})
    assert "boundary" in assert_error(no_boundary, 400, "invalid_input")["detail"]

    garbage = post("/v1/ingest?name=m", content=b"this is not multipart at all\r\n",
                   headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert "multipart" in assert_error(garbage, 400, "invalid_input")["detail"]

    no_file = post("/v1/ingest?name=m", files={"other": ("x.csv", b"a\n1\n", "text/csv")})
    assert "'file'" in assert_error(no_file, 400, "invalid_input")["detail"]

    truncated = (
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n"
        b"Content-Type: text/csv\r\n\r\na,b\n1,2\n"
    )
    cut = post("/v1/ingest?name=m", content=truncated,
               headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert "closing boundary" in assert_error(cut, 400, "invalid_input")["detail"]
    assert lake.catalog.list() == []
    assert lake.storage.list("datasets") == []


def test_unsupported_upload_types_are_415(client: httpx.Client) -> None:
    form = client.post("/v1/ingest?name=x", content=b"a=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "text/csv" in assert_error(form, 415, "unsupported_media_type")["detail"]
    gzipped = client.post("/v1/ingest?name=x", content=b"\x1f\x8b",
                          headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"})
    assert_error(gzipped, 415, "unsupported_media_type")


def test_uploads_over_the_limit_are_413(serve: Serve) -> None:
    with running(serve, ingest={"max_upload_bytes": 64 * 1024}) as (client, lake):
        declared = client.post("/v1/ingest?name=big", content=workers_csv(5_000),
                               headers={"Content-Type": "text/csv"})
        body = assert_error(declared, 413, "too_large")
        assert "65536" in body["detail"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: refused while it streams
            for start in range(0, 5_000, 500):
                yield workers_csv(500, start=start)

        streamed = client.post("/v1/ingest?name=big", content=chunked(),
                               headers={"Content-Type": "text/csv"})
        assert_error(streamed, 413, "too_large")
        multipart = ingest(client, "big", workers_csv(5_000))
        assert_error(multipart, 413, "too_large")
        assert lake.catalog.list() == []
        assert lake.storage.list("datasets") == []


def test_busy_ingest_is_503_with_retry_after(serve: Serve) -> None:
    release = threading.Event()
    with running(serve, ingest={"max_concurrent_ingests": 1}) as (client, _lake):
        def slow_body() -> Iterator[bytes]:
            yield b"id,name\n1,first\n"
            release.wait(30)
            yield b"2,second\n"

        outcome: dict[str, httpx.Response] = {}

        def first_upload() -> None:
            with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
                outcome["first"] = other.post(
                    "/v1/ingest?name=slow", content=slow_body(),
                    headers={"Content-Type": "text/csv"},
                )

        uploader = threading.Thread(target=first_upload)
        uploader.start()
        try:
            wait_until(lambda: client.get("/health").json()["ingests_running"] == 1)
            busy = ingest(client, "second", b"a\n1\n")
            assert_error(busy, 503, "busy")
            assert busy.headers["retry-after"] == "5"
        finally:
            release.set()
            uploader.join(30)
        assert outcome["first"].status_code == 200, outcome["first"].text
        assert outcome["first"].json()["row_count"] == 2
        assert ingest(client, "second", b"a\n1\n").status_code == 200


def test_an_aborted_upload_leaves_nothing_behind(http: tuple[httpx.Client, Lake]) -> None:
    client, lake = http
    host, port = client.base_url.host, client.base_url.port
    head = workers_csv(2_000)
    request = (
        f"POST /v1/ingest?name=aborted HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: text/csv\r\nContent-Length: {len(head) * 10}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port)) as raw:
        raw.sendall(request + head)
        wait_until(lambda: client.get("/health").json()["ingests_running"] == 1)
    wait_until(lambda: client.get("/health").json()["ingests_running"] == 0)
    assert lake.catalog.list() == []
    assert_error(client.get("/v1/catalog/aborted"), 404, "not_found")
    assert lake.storage.list("datasets") == []


# -- SQL -----------------------------------------------------------------------------------

TYPED_SQL = (
    "SELECT id, name, zip, rate, DATE '2024-01-02' + CAST(id AS INTEGER) AS day, "
    "TIMESTAMP '2024-01-02 03:04:05.25' AS seen, CAST(rate AS DECIMAL(10, 2)) AS price, "
    "CAST(rate AS DECIMAL(30, 4)) AS exact, sum(id) OVER () AS total FROM people ORDER BY id"
)


def test_sql_json_values_are_typed_sensibly(client: httpx.Client) -> None:
    assert ingest(client, "people", PEOPLE_CSV).status_code == 200
    rows = sql(client, TYPED_SQL).json()
    assert rows[1] == {
        "id": 2, "name": "Lovelace, Ada", "zip": "60601", "rate": 30.25,
        "day": "2024-01-04", "seen": "2024-01-02T03:04:05.250000", "price": 30.25,
        "exact": 30.25, "total": 10,
    }
    assert rows[2]["name"] == 'She said "hi"'
    assert sql(client, "SELECT * FROM people WHERE id < 0").content == b"[]"


def test_sql_json_encodes_values_json_has_no_type_for(people_client: httpx.Client) -> None:
    client = people_client
    text = (
        "SELECT 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, 1.5::DOUBLE AS x, "
        "TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at, '\\xAA\\xBB'::BLOB AS raw, "
        "[DATE '2024-01-02'] AS days, {'a': 1, 'b': 'two'} AS pair, "
        "INTERVAL 1 DAY AS span, TIME '01:02:03' AS clock, NULL AS nothing"
    )
    response = sql(client, text)
    assert response.status_code == 200, response.text
    assert json.loads(response.content) == [{
        "nan": None, "inf": None, "x": 1.5, "at": "2024-01-02T03:04:05.000000Z",
        "raw": "qrs=", "days": ["2024-01-02"], "pair": {"a": 1, "b": "two"},
        "span": {"months": 0, "days": 1, "nanoseconds": 0}, "clock": "01:02:03.000000",
        "nothing": None,
    }]
    ndjson = sql(client, text, accept="application/x-ndjson").content
    assert json.loads(ndjson) == json.loads(response.content)[0]


@pytest.mark.parametrize(
    "accept",
    ["application/json", "*/*", "application/x-ndjson", "text/csv", ARROW_STREAM, PARQUET],
)
def test_every_result_format_parses_back(people_client: httpx.Client, accept: str) -> None:
    client = people_client
    expected = sql(client, "SELECT id, name, zip, rate FROM people ORDER BY id",
                   accept=ARROW_STREAM)
    want = pa.ipc.open_stream(expected.content).read_all()
    response = sql(client, "SELECT id, name, zip, rate FROM people ORDER BY id", accept=accept)
    assert response.status_code == 200, response.text
    media = "application/json" if accept == "*/*" else accept
    assert response.headers["content-type"].split(";")[0] == media
    got = _parse(response.content, media, want.schema)
    assert got.to_pylist() == want.to_pylist()
    assert want.column("zip").to_pylist()[0] == "00501"


def _parse(content: bytes, media: str, schema: pa.Schema) -> pa.Table:
    if media == "application/json":
        return pa.Table.from_pylist(json.loads(content), schema=schema)
    if media == "application/x-ndjson":
        rows = [json.loads(line) for line in content.decode().splitlines()]
        assert content.endswith(b"\n")
        return pa.Table.from_pylist(rows, schema=schema)
    if media == "text/csv":
        header = next(csv.reader(io.StringIO(content.decode())))
        assert header == schema.names
        options = pa_csv.ConvertOptions(column_types=schema)
        return pa_csv.read_csv(io.BytesIO(content), convert_options=options)
    if media == ARROW_STREAM:
        return pa.ipc.open_stream(content).read_all()
    return pq.read_table(io.BytesIO(content))


def test_large_results_stream_in_many_batches(client: httpx.Client) -> None:
    rows = 150_000
    assert client.post("/v1/ingest?name=many", content=workers_csv(rows),
                       headers={"Content-Type": "text/csv"}).status_code == 200
    with client.stream("POST", "/v1/sql", json={"sql": "SELECT * FROM many"},
                       headers={"Accept": ARROW_STREAM}) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        reader = pa.ipc.open_stream(response.read())
        batches = list(reader)
    assert sum(batch.num_rows for batch in batches) == rows
    assert len(batches) > 1
    lines = sql(client, "SELECT id FROM many", accept="application/x-ndjson").content
    assert lines.count(b"\n") == rows
    parquet = pq.ParquetFile(io.BytesIO(sql(client, "SELECT * FROM many", accept=PARQUET).content))
    assert parquet.metadata.num_rows == rows
    assert parquet.metadata.num_row_groups > 1


def test_select_star_is_read_from_the_objects_as_duckdb_would_answer(
    http: tuple[httpx.Client, Lake],
) -> None:
    client, lake = http
    assert ingest(client, "many", workers_csv(150_000)).status_code == 200
    assert ingest(client, "many", workers_csv(20_000, start=150_000), "append").status_code == 200
    objects = len(lake.catalog.get("many").objects)
    by_duckdb = pa.ipc.open_stream(
        sql(client, "SELECT * FROM many WHERE true", accept=ARROW_STREAM).content).read_all()
    assert client.get("/health").json()["cache"]["arrow"]["objects"] == 0

    for attempt in range(2):  # decoded from storage, then from memory
        with client.stream("POST", "/v1/sql", json={"sql": "SELECT * FROM many"},
                           headers={"Accept": ARROW_STREAM}) as response:
            assert response.status_code == 200
            assert response.headers.get("transfer-encoding") == "chunked"
            answer = pa.ipc.open_stream(response.read()).read_all()
        assert answer.schema == by_duckdb.schema
        assert answer.sort_by("id").equals(by_duckdb.sort_by("id"))
        cache = client.get("/health").json()["cache"]
        arrow = cache["arrow"]
        assert (arrow["objects"], arrow["misses"], arrow["hits"]) == (
            objects, objects, attempt * objects)
        assert 0 < arrow["bytes"] <= cache["used_bytes"] <= cache["max_bytes"]
        assert cache["max_bytes"] == lake.settings.cache.max_bytes
    # Small answers from the objects are still one body with a Content-Length.
    assert ingest(client, "few", workers_csv(3)).status_code == 200
    response = sql(client, 'select * from "few";')
    assert response.json() == [{"id": n, "name": f"worker {n}", "state": ("IL", "WI", "NY")[n],
                                "rate": n + 0.5} for n in range(3)]
    assert response.headers["content-length"] == str(len(response.content))


def test_a_lost_object_is_an_error_status_not_a_short_answer(serve: Serve) -> None:
    with running(serve, cache={"max_bytes": 0}) as (client, lake):
        assert ingest(client, "lost", workers_csv(100)).status_code == 200
        assert sql(client, "SELECT * FROM lost").status_code == 200  # its schema is checked
        lake.storage.delete(lake.catalog.get("lost").objects[0].key)
        response = sql(client, "SELECT * FROM lost", accept=ARROW_STREAM)
        assert response.status_code in {404, 502}, response.text
        assert response.json()["error"] in {"not_found", "storage_error"}
        assert client.get("/health").json()["status"] == "ok"


def test_a_query_cut_off_mid_stream_ends_the_response_short(serve: Serve) -> None:
    with running(serve, query={"timeout_seconds": 1.0, "batch_rows": 2048}) as (client, _lake):
        assert client.post("/v1/ingest?name=many", content=workers_csv(10_000),
                           headers={"Content-Type": "text/csv"}).status_code == 200
        endless = "SELECT a.id, b.id AS other FROM many a, many b"  # 10^8 rows
        with client.stream("POST", "/v1/sql", json={"sql": endless},
                           headers={"Accept": "application/x-ndjson"}) as response:
            assert response.status_code == 200
            # No clean end: a truncated result must never pass for a complete one.
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in response.iter_raw():
                    pass
        assert client.get("/health").json()["status"] == "ok"
        assert sql(client, "SELECT count(*) FROM many").content == b'[{"count_star()":10000}]'


def test_sql_refusals_are_precise_4xx(people_client: httpx.Client) -> None:
    client = people_client
    post = client.post
    assert_error(post("/v1/sql", content=b"{not json"), 400, "invalid_input")
    assert_error(post("/v1/sql", content=b""), 400, "invalid_input")
    missing = assert_error(post("/v1/sql", json={"query": "SELECT 1"}), 400, "invalid_input")
    assert "sql" in missing["detail"]
    assert_error(post("/v1/sql", json=["SELECT 1"]), 400, "invalid_input")
    assert_error(post("/v1/sql", json={"sql": 42}), 400, "invalid_input")
    assert_error(post("/v1/sql", content=b" " * (2 * MiB)), 413, "too_large")
    unknown = sql(client, "SELECT * FROM no_such_table")
    assert unknown.status_code in (400, 404)
    assert unknown.json()["error"] in ("invalid_input", "not_found")
    assert_error(sql(client, "SELEC 1"), 400, "invalid_input")
    writes = sql(client, "COPY (SELECT 1) TO '/tmp/flight_lake_http_test.csv'")
    assert writes.status_code in (400, 403)
    not_acceptable = sql(client, "SELECT 1", accept="image/png")
    body = assert_error(not_acceptable, 406, "not_acceptable")
    assert ARROW_STREAM in body["detail"]


def test_accept_negotiation_honours_quality(people_client: httpx.Client) -> None:
    client = people_client
    response = sql(client, "SELECT 1 AS one", accept=f"image/png, text/csv;q=0.5, {PARQUET};q=0.9")
    assert response.headers["content-type"] == PARQUET
    response = sql(client, "SELECT 1 AS one", accept="text/*")
    assert response.content.splitlines() == [b'"one"', b"1"]
    assert_error(sql(client, "SELECT 1", accept="application/json;q=0"), 406, "not_acceptable")


def test_small_results_are_sent_whole_with_a_content_length(client: httpx.Client) -> None:
    assert client.post("/v1/ingest?name=many", content=workers_csv(20_000),
                       headers={"Content-Type": "text/csv"}).status_code == 200
    response = sql(client, "SELECT count(*) FROM many")
    assert response.content == b'[{"count_star()":20000}]'
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers
    # Past WHOLE_BODY_BYTES the same route streams.
    crossed = "SELECT * FROM many, many AS b LIMIT 60000"
    with client.stream("POST", "/v1/sql", json={"sql": crossed}) as big:
        assert big.headers.get("transfer-encoding") == "chunked"
        body = big.read()
    assert len(body) > streams.WHOLE_BODY_BYTES
    assert len(json.loads(body)) == 60_000


JSON_TYPES_SQL = r"""
    SELECT i AS id, (i % 200)::UTINYINT AS small, i * 1.5 AS half, (i % 7)::DOUBLE AS whole,
           CASE i % 4 WHEN 0 THEN 'nan'::DOUBLE WHEN 1 THEN 'inf'::DOUBLE
                WHEN 2 THEN NULL ELSE -0.0 END AS odd, 0.1::FLOAT AS single,
           1e300::DOUBLE AS big, 1e-7::DOUBLE AS tiny, CAST(i AS DECIMAL(10, 2)) / 4 AS price,
           CAST(123456789012345678901234567890 AS DECIMAL(38, 0)) + i AS huge, i % 3 = 0 AS yes,
           CASE WHEN i % 5 = 0 THEN NULL ELSE 'w ' || i END AS name,
           'quote " back \ tab ' || chr(9) || 'nl ' || chr(10) || chr(13) || ' ünï ☃' AS tricky,
           chr(1) || chr(31) || 'x' AS control, DATE '2024-01-02' + i::INTEGER AS day,
           TIMESTAMP '2024-01-02 03:04:05.25' AS seen, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at,
           TIME '01:02:03' AS clock, '\xAA\xBB'::BLOB AS raw, [i, NULL] AS list,
           {'a': i, 'b': 'two'} AS pair, INTERVAL 1 DAY AS span, NULL AS nothing,
           'first' AS dup, 'last' AS dup
    FROM range(700) AS t(i)
"""


@pytest.mark.parametrize("separator", [",", "\n"])
def test_json_rows_arrow_route_writes_what_the_python_route_writes(
    monkeypatch: pytest.MonkeyPatch, separator: str,
) -> None:
    table = duckdb.connect().execute(JSON_TYPES_SQL).to_arrow_table().combine_chunks()
    batch = table.to_batches()[0]
    assert batch.num_rows == 700 >= json_rows.ARROW_ROUTE_ROWS  # the Arrow route by default
    fast = json_rows.json_rows(batch, separator)
    monkeypatch.setattr(json_rows, "ARROW_ROUTE_ROWS", 10**9)
    slow = json_rows.json_rows(batch, separator)
    assert fast.endswith(separator.encode()) and slow.endswith(separator.encode())

    def parsed(text: bytes) -> list:
        if separator == ",":
            return list(json.loads(b"[" + text[:-1] + b"]"))
        return [json.loads(line) for line in text.decode().split("\n")[:-1]]

    rows = parsed(fast)
    assert rows == parsed(slow)
    assert [row["odd"] for row in rows[:4]] == [None, None, None, 0.0]  # nan, inf, null, -0.0
    row = rows[3]
    assert row["whole"] == 3.0 and b'"whole":3.0' in fast  # a float stays a float
    assert row["huge"] == 123456789012345678901234567893  # exact
    assert row["tricky"] == 'quote " back \\ tab \tnl \n\r ünï ☃'
    assert row["control"] == "\x01\x1fx"
    assert list(row)[-1] == "dup" and row["dup"] == "last"  # as a dict of the row would have it
    assert row["seen"] == "2024-01-02T03:04:05.250000" and row["at"].endswith("Z")
    assert row["raw"] == "qrs=" and row["pair"] == {"a": 3, "b": "two"} and row["list"] == [3, None]


# -- catalog -------------------------------------------------------------------------------


def test_catalog_routes(http: tuple[httpx.Client, Lake]) -> None:
    client, _lake = http
    assert client.get("/v1/catalog").json() == []
    created = ingest(client, "people", PEOPLE_CSV).json()
    listed = client.get("/v1/catalog").json()
    assert [m["name"] for m in listed] == ["people"]
    assert client.get("/v1/catalog/people").json() == created
    assert_error(client.get("/v1/catalog/ghost"), 404, "not_found")
    assert_error(client.get("/v1/catalog/Not-A-Name"), 400, "invalid_input")
    assert_error(client.get("/v1/catalog/register"), 404, "not_found")


def _put_parquet(lake: Lake, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    lake.storage.put(key, sink.getvalue())


def test_register_is_idempotent_and_conflicts_on_another_schema(
    http: tuple[httpx.Client, Lake],
) -> None:
    client, lake = http
    _put_parquet(lake, "datasets/reg/v1/part-0.parquet", pa.table({"x": [1, 2, 3]}))
    _put_parquet(lake, "datasets/reg/v2/part-0.parquet", pa.table({"y": ["a"]}))
    request = {"name": "reg", "keys": ["datasets/reg/v1/part-0.parquet"]}
    first = client.post("/v1/catalog/register", json=request)
    assert first.status_code == 200, first.text
    assert first.json()["row_count"] == 3
    again = client.post("/v1/catalog/register", json=request)
    assert again.json()["dataset_id"] == first.json()["dataset_id"]
    assert sql(client, "SELECT sum(x) AS s FROM reg").json() == [{"s": 6}]
    other = {"name": "reg", "keys": ["datasets/reg/v2/part-0.parquet"], "mode": "create"}
    assert_error(client.post("/v1/catalog/register", json=other), 409, "conflict")
    missing = {"name": "reg", "keys": ["datasets/reg/v9/part-0.parquet"]}
    assert_error(client.post("/v1/catalog/register", json=missing), 404, "not_found")
    assert_error(client.post("/v1/catalog/register", json={"name": "reg"}), 400, "invalid_input")
    bad_mode = {**request, "mode": "merge"}
    assert_error(client.post("/v1/catalog/register", json=bad_mode), 400, "invalid_input")
    assert_error(client.post("/v1/catalog/register", content=b"[1,"), 400, "invalid_input")


# -- storage -------------------------------------------------------------------------------


def test_storage_routes_list_and_stream_objects(
    serve: Serve, backend_storage_settings: StorageSettings,
) -> None:
    """HTTP's smoke test on each backend: the other HTTP tests run on local storage."""
    with running(serve, storage=backend_storage_settings) as (client, lake):
        _check_storage_routes(client, lake)


def _check_storage_routes(client: httpx.Client, lake: Lake) -> None:
    manifest = ingest(client, "people", PEOPLE_CSV).json()
    key = manifest["objects"][0]["key"]
    listed = client.get("/v1/storage/list", params={"prefix": "datasets/people"}).json()
    assert [o["key"] for o in listed["objects"]] == [o["key"] for o in manifest["objects"]]
    assert listed["objects"][0]["size"] == manifest["objects"][0]["size"]
    everything = client.get("/v1/storage/list").json()["objects"]
    assert any(o["key"].startswith("_catalog/manifests/people/") for o in everything)

    fetched = client.get(f"/v1/storage/get/{key}")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == PARQUET
    assert fetched.content == lake.storage.get(key)
    assert int(fetched.headers["content-length"]) == len(fetched.content)
    assert pq.read_table(io.BytesIO(fetched.content)).num_rows == 4
    assert_error(client.get("/v1/storage/get/datasets/people/nope.parquet"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/storage/get/%2E%2E/%2E%2E/etc/passwd",
        "/v1/storage/get/datasets/%2E%2E/%2E%2E/secret",
        "/v1/storage/get/%2Fetc%2Fpasswd",
        "/v1/storage/get/datasets//x",
        "/v1/storage/list?prefix=../",
        "/v1/storage/list?prefix=/etc",
        "/v1/storage/list?prefix=datasets/../..",
    ],
)
def test_storage_routes_refuse_keys_outside_the_root(people_client: httpx.Client,
                                                      path: str) -> None:
    assert_error(people_client.get(path), 400, "invalid_input")


# -- the server ----------------------------------------------------------------------------


def test_server_binds_a_free_port_and_stops_gracefully(local_settings: Settings) -> None:
    lake = Lake.open(local_settings)
    try:
        server = HttpServer(create_app(lake), "127.0.0.1", 0).start()
        port = server.port
        assert port > 0
        release = threading.Event()
        outcome: dict[str, httpx.Response] = {}

        def slow_body() -> Iterator[bytes]:
            yield b"id\n1\n"
            release.wait(30)
            yield b"2\n"

        def upload() -> None:
            outcome["response"] = httpx.post(
                f"{server.url}/v1/ingest?name=late", content=slow_body(),
                headers={"Content-Type": "text/csv"}, timeout=60,
            )

        uploader = threading.Thread(target=upload)
        uploader.start()
        wait_until(lambda: lake.ingest.active == 1)
        stopper = threading.Thread(target=server.stop)
        stopper.start()

        def refused() -> bool:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                # A connection accepted just before the listener closed is reset, not refused.
                return True
            return False

        wait_until(refused, 20, "new connections refused")
        assert stopper.is_alive()  # still waiting for the upload it is serving
        release.set()
        uploader.join(30)
        stopper.join(30)
        assert not stopper.is_alive()
        assert outcome["response"].status_code == 200  # the in-flight request finished
        assert lake.catalog.get("late").row_count == 2
    finally:
        lake.close()


def test_keep_alive_connections_have_nagle_off(http: tuple[httpx.Client, Lake]) -> None:
    """No response waits ~40 ms for the client's delayed ACK: the connection the server
    accepted and answers every kind of request on has Nagle's algorithm off.

    (How fast a request is answered is measured in benchmarks, not asserted here.)
    """
    client, _lake = http
    assert ingest(client, "people", PEOPLE_CSV).status_code == 200
    assert client.get("/health").status_code == 200
    assert sql(client, "SELECT count(*) FROM people").status_code == 200
    assert client.get("/v1/catalog/nope").status_code == 404
    port = client.base_url.port
    accepted = [c for c in psutil.Process().net_connections("tcp")
                if c.laddr.port == port and c.raddr and c.status == psutil.CONN_ESTABLISHED]
    assert len(accepted) == 1  # all four requests on one keep-alive connection
    if accepted[0].fd == -1:
        pytest.skip("this platform does not tell a connection's file descriptor")
    with socket.socket(fileno=os.dup(accepted[0].fd)) as served:
        assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_accepted_connections_have_nagle_off() -> None:
    listener = listening_socket("127.0.0.1", 0)
    try:
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                # asyncio sets TCP_NODELAY on sockets whose protocol says TCP (not 0) ...
                assert accepted.proto == socket.IPPROTO_TCP
                # ... and Linux copies the listener's option to the accepted socket.
                if sys.platform.startswith("linux"):
                    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_a_port_in_use_is_unavailable(local_settings: Settings) -> None:
    lake = Lake.open(local_settings)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Unavailable, match="cannot listen"):
            HttpServer(create_app(lake), "127.0.0.1", taken.getsockname()[1]).start()
    finally:
        taken.close()
        lake.close()


def test_stop_abandons_a_stalled_upload_after_the_grace_period(local_settings: Settings) -> None:
    lake = Lake.open(local_settings)
    try:
        server = HttpServer(create_app(lake), "127.0.0.1", 0, grace_seconds=1).start()
        head = workers_csv(1_000)
        request = (
            f"POST /v1/ingest?name=stalled HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: text/csv\r\nContent-Length: {len(head) * 10}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(request + head)  # ... and never the rest
            wait_until(lambda: lake.ingest.active == 1, 60, "the upload started")
            server.stop()  # the upload never ends: stop() gives up on it after the grace
        wait_until(lambda: lake.ingest.active == 0, 60, "the stalled upload abandoned")
        assert lake.catalog.list() == []
        assert lake.storage.list("datasets") == []
    finally:
        lake.close()


# -- memory --------------------------------------------------------------------------------


def _generated_csv(total_bytes: int) -> Iterator[bytes]:
    block = workers_csv(20_000)
    header, _, rows = block.partition(b"\n")
    yield header + b"\n"
    sent = 0
    while sent < total_bytes:
        yield rows
        sent += len(rows)


def _peak_rss_while(process: psutil.Process, action: object) -> tuple[int, object]:
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = action()  # type: ignore[operator]
    finally:
        done.set()
        sampler.join()
    return peak, result


@pytest.mark.slow
def test_a_large_upload_does_not_grow_memory_with_its_size(
    serve_process: Callable[..., ServeProcess],
) -> None:
    # The server has a process of its own, so its memory is the uploads' alone: not that of
    # whatever else runs in the test process meanwhile (another test's server still winding
    # down on a loaded machine, the client's generator, pytest).
    running = serve_process(env={"FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES": str(1024 * MiB)})
    server = psutil.Process(running.process.pid)
    with httpx.Client(base_url=running.wait_for("server_started")["http"], timeout=600) as client:
        def upload(name: str, size: int) -> httpx.Response:
            return client.post(f"/v1/ingest?name={name}", content=_generated_csv(size),
                               headers={"Content-Type": "text/csv"})

        upload("warmup", 8 * MiB)  # first-use allocations (pyarrow pools, DuckDB) happen here
        baseline = server.memory_info().rss
        small_peak, small = _peak_rss_while(server, lambda: upload("small", 40 * MiB))
        large_peak, large = _peak_rss_while(server, lambda: upload("large", 240 * MiB))
    assert small.status_code == 200 and large.status_code == 200  # type: ignore[attr-defined]
    assert large.json()["row_count"] > 5 * small.json()["row_count"]  # type: ignore[attr-defined]
    small_growth = small_peak - baseline
    large_growth = large_peak - baseline
    print(f"baseline {baseline / MiB:.0f} MiB, growth small {small_growth / MiB:.0f} MiB, "
          f"large {large_growth / MiB:.0f} MiB")
    # 6x the data must not take anything like 6x the memory, nor a fraction of the upload.
    assert large_growth < small_growth + 96 * MiB
    # in flight at once: a row group being filled and one being encoded (each at most
    # ingest.row_group_bytes, 64 MiB) and Arrow's parse blocks; 80 MiB alone, 122 MiB seen
    # with four test workers on two cores
    assert large_growth < 160 * MiB


def test_nan_nested_in_lists_and_structs_becomes_null() -> None:
    from flight_lake_client.json_rows import json_rows

    for rows in (3, 600):  # the Python route and the Arrow route
        batch = pa.record_batch({
            "l": [[1.0, float("nan")], None, [float("inf")]] * (rows // 3),
            "s": [{"x": float("nan")}, None, {"x": 1.0}] * (rows // 3),
        })
        decoded = json.loads("[" + json_rows(batch, ",").decode().rstrip(",") + "]")
        assert decoded[:3] == [{"l": [1.0, None], "s": {"x": None}}, {"l": None, "s": None},
                               {"l": [None], "s": {"x": 1.0}}]


# -- upload caps, replacements, compressed and non-CSV uploads, with curl -----------------


def curl(*args: str) -> tuple[int, int, str]:
    """Run curl; (HTTP status, bytes of body it uploaded, response body)."""
    result = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{size_upload}", *args],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    code, uploaded = status.split()
    return int(code), int(uploaded), body


def test_curl_over_the_cap_gets_413_before_sending_the_body(serve: Serve,
                                                              tmp_path: Path) -> None:
    """413 from Content-Length alone: curl waits for 100-continue, which never comes."""
    big = tmp_path / "big.csv"
    big.write_bytes(workers_csv(200_000))  # several MiB
    with running(serve, ingest={"max_upload_bytes": MiB}) as (client, lake):
        url = f"{str(client.base_url).rstrip('/')}/v1/ingest?name=big"
        for upload in (["--data-binary", f"@{big}", "-H", "Content-Type: text/csv"],
                       ["-F", f"file=@{big}"]):
            status, uploaded, body = curl("-H", "Expect: 100-continue", *upload, url)
            assert status == 413, body
            assert uploaded == 0
            assert json.loads(body)["error"] == "too_large"
            assert str(MiB) in json.loads(body)["detail"]
        assert lake.catalog.list() == [] and lake.ingest.active == 0


def test_http_answers_say_what_an_upload_replaced_or_left_unchanged(
        client: httpx.Client) -> None:
    first = ingest(client, "people", PEOPLE_CSV).json()
    again = ingest(client, "people", PEOPLE_CSV).json()
    assert (again["version"], again["unchanged"]) == (1, True)
    more = PEOPLE_CSV + b"5,Edsger,NY,10002,12\n"
    replaced = ingest(client, "people", more).json()
    assert (replaced["version"], replaced["unchanged"], replaced["row_count"]) == (2, False, 5)
    assert replaced["replaced"] == {"version": 1, "row_count": 4,
                                    "size_bytes": first["size_bytes"]}
    assert client.get("/v1/catalog/people").json()["replaced"]["version"] == 1


def test_gzip_and_zstd_files_upload_as_they_are(serve: Serve, tmp_path: Path) -> None:
    plain = workers_csv(3_000)
    gz = tmp_path / "workers.csv.gz"
    gz.write_bytes(gzip.compress(plain))
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(plain)
    zst = tmp_path / "workers.csv.zst"
    zst.write_bytes(sink.getvalue().to_pybytes())
    with running(serve) as (client, _):
        url = f"{str(client.base_url).rstrip('/')}/v1/ingest"
        status, _, body = curl("-F", f"file=@{gz}", f"{url}?name=gz")
        assert status == 200 and json.loads(body)["row_count"] == 3_000, body
        status, _, body = curl("--data-binary", f"@{zst}", "-H", "Content-Type: text/csv",
                               f"{url}?name=zst")
        assert status == 200 and json.loads(body)["row_count"] == 3_000, body
        assert json.loads(body)["content_digest"] == client.get(
            "/v1/catalog/gz").json()["content_digest"]


def test_a_png_is_refused_by_name_without_echoing_it(client: httpx.Client) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    body = assert_error(ingest(client, "picture", png), 400, "invalid_input")
    assert body["format"] == "png"
    assert "a PNG image" in body["detail"] and body["detail"].isascii()
    assert "IHDR" not in json.dumps(body)
