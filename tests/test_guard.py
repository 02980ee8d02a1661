"""HTTP with users: Basic and Bearer, 401 with WWW-Authenticate, 403 naming the role."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from flight_lake.auth import Authenticator
from flight_lake.http.routes import ROUTE_OPERATIONS, create_app
from flight_lake.serve import Server
from flight_lake.settings import AuthSettings, StorageSettings
from tests.support import PASSWORDS, SIGNING_KEY, auth_section, basic, make_bucket

PEOPLE = b"name,age\nada,36\ngrace,45\n"
S3_SECRET_MARKER = "S3-SECRET-MARKER-7f3a9c"


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """A server with users (reader1, writer1, admin1) on local storage."""
    return serve(auth=auth_section())


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    assert server.http_uri is not None
    with httpx.Client(base_url=server.http_uri, timeout=30) as client:
        yield client


def auth(user: str) -> dict[str, str]:
    return {"Authorization": basic(user, PASSWORDS[user])}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_curl_with_user_and_password_ingests_and_without_gets_401(
        server: Server, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_bytes(PEOPLE)
    url = f"{server.http_uri}/v1/ingest?name=people"
    refused = curl("-i", "-F", f"file=@{csv}", url)
    assert refused.stdout.rstrip().endswith("401")
    assert 'www-authenticate: basic realm="flight_lake"' in refused.stdout.lower()
    done = curl("-u", f"writer1:{PASSWORDS['writer1']}", "-F", f"file=@{csv}", url)
    assert done.stdout.rstrip().endswith("200"), done.stdout
    assert '"row_count":2' in done.stdout


def test_a_token_from_the_token_route_works_as_bearer(http: httpx.Client) -> None:
    answer = http.post("/v1/auth/token", headers=auth("reader1"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["role"] == "reader"
    assert answer.headers["cache-control"] == "no-store"
    listing = http.get("/v1/catalog",
                       headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listing.status_code == 200 and listing.json() == []


def test_bad_credentials_get_401_with_a_challenge(http: httpx.Client) -> None:
    for headers in ({}, {"Authorization": basic("reader1", "Guess-0451")},
                    {"Authorization": basic("nobody", "Guess-0451")},
                    {"Authorization": "Bearer not-a-token"}):
        answer = http.get("/v1/catalog", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthenticated"
        assert answer.headers["www-authenticate"].startswith('Basic realm="flight_lake"')
    wrong = http.post("/v1/auth/token", headers={"Authorization": basic("reader1", "x1")})
    unknown = http.post("/v1/auth/token", headers={"Authorization": basic("nobody", "x1")})
    assert wrong.json() == unknown.json() == {"error": "unauthenticated",
                                              "detail": "wrong user name or password"}


def test_a_reader_cannot_ingest_and_nothing_changes(http: httpx.Client) -> None:
    with capture_logs() as logs:
        answer = http.post("/v1/ingest?name=people", content=PEOPLE, headers=auth("reader1"))
    assert answer.status_code == 403
    assert answer.json() == {"error": "permission_denied",
                             "detail": "ingest needs the writer role; reader1 is a reader"}
    assert http.get("/v1/catalog", headers=auth("reader1")).json() == []
    refused = next(e for e in logs if e["event"] == "auth_refused")
    assert refused["user"] == "reader1" and refused["address"] == "127.0.0.1"


def test_storage_routes_need_an_admin(http: httpx.Client) -> None:
    http.post("/v1/ingest?name=people", content=PEOPLE, headers=auth("writer1"))
    for path in ("/v1/storage/list", "/v1/storage/get/catalog"):
        answer = http.get(path, headers=auth("writer1"))
        assert answer.status_code == 403
        assert "storage.read needs the admin role" in answer.json()["detail"]
    listing = http.get("/v1/storage/list", headers=auth("admin1"))
    assert listing.status_code == 200 and listing.json()["objects"]


def test_health_is_open_but_shows_only_the_status_to_non_admins(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/health", headers=auth("reader1")).json() == {"status": "ok"}
    full = http.get("/health", headers=auth("admin1")).json()
    assert full["status"] == "ok" and "storage" in full
    assert http.get("/health", headers={"Authorization": "Bearer bad"}).status_code == 401


def test_failed_logins_from_an_address_past_the_limit_get_busy(
        serve: Callable[..., Server]) -> None:
    running = serve(auth=auth_section(login_failure_limit=2))
    with httpx.Client(base_url=str(running.http_uri)) as http:
        for _ in range(2):
            assert http.post("/v1/auth/token", headers={
                "Authorization": basic("nobody", "Guess-0451")}).status_code == 401
        locked = http.post("/v1/auth/token", headers=auth("admin1"))
    assert locked.status_code == 503
    assert locked.json()["error"] == "busy"
    assert int(locked.headers["retry-after"]) == locked.json()["retry_after"] > 0


def test_every_route_is_in_the_role_table() -> None:
    from flight_lake.auth import OPERATIONS

    assert set(ROUTE_OPERATIONS.values()) <= set(OPERATIONS)


def test_no_password_token_or_s3_key_leaks_from_any_route(
        s3_endpoint: str, serve: Callable[..., Server]) -> None:
    storage = StorageSettings(uri=f"s3://{make_bucket(s3_endpoint)}/lake",
                              endpoint_url=s3_endpoint, access_key_id="testing",
                              secret_access_key=S3_SECRET_MARKER)
    secrets = [S3_SECRET_MARKER, SIGNING_KEY, *PASSWORDS.values()]
    with capture_logs() as logs:
        running = serve(storage=storage, auth=auth_section())
        with httpx.Client(base_url=str(running.http_uri), timeout=60) as http:
            token = http.post("/v1/auth/token", headers=auth("admin1")).json()["access_token"]
            as_admin = {"Authorization": f"Bearer {token}"}
            http.post("/v1/ingest?name=people", content=PEOPLE, headers=as_admin)
            key = http.get("/v1/storage/list", headers=as_admin).json()["objects"][0]["key"]
            answers = [
                http.get("/health"), http.get("/health", headers=as_admin),
                http.get("/openapi.json"),
                http.post("/v1/auth/token", headers={"Authorization": basic("admin1", "bad-1")}),
                http.get("/v1/catalog", headers=as_admin),
                http.get("/v1/catalog/people", headers=as_admin),
                http.get("/v1/storage/list", headers=as_admin),
                http.get(f"/v1/storage/get/{key}", headers=as_admin),
                http.post("/v1/catalog/register", headers=as_admin,
                          json={"name": "x", "keys": ["nope"]}),
                http.post("/v1/ingest?name=people", content=PEOPLE, headers=as_admin),
            ]
            for sql in ("SELECT current_setting('s3_secret_access_key') AS s",
                        "SELECT * FROM duckdb_secrets()",
                        "SELECT * FROM duckdb_settings()",
                        "SELECT count(*) AS n FROM people"):
                answers.append(http.post("/v1/sql", json={"sql": sql}, headers=as_admin))
            assert {a.status_code for a in answers[-4:-1]} == {403}
        assert answers[-1].status_code == 200
        running.stop()  # its shutdown's log lines are checked too
    every_route = {route for route in ROUTE_OPERATIONS} | {"/health", "/openapi.json"}
    assert len(every_route) <= len(answers)
    for answer in answers:
        seen = answer.content + str(answer.headers).encode()
        for secret in secrets:
            assert secret.encode() not in seen, (answer.request.url, secret)
        if answer.request.url.path != "/v1/auth/token":
            assert token.encode() not in seen
    logged = repr(logs)
    for secret in [*secrets, token]:
        assert secret not in logged


def test_openapi_describes_the_token_route_and_the_schemes(
        server: Server, http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"basic", "bearer"}
    assert "/v1/auth/token" in document["paths"]
    assert "401" in document["paths"]["/v1/sql"]["post"]["responses"]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert server.lake is not None
    app = create_app(server.lake, Authenticator(AuthSettings.model_validate(auth_section())))
    served = {getattr(route, "path", "").replace("{key:path}", "{key}") for route in app.routes}
    assert served == set(document["paths"])
