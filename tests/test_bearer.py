"""Flight with users: the Basic → Bearer handshake, tokens on every call, roles per call."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from structlog.testing import capture_logs

from flight_lake.auth.tokens import TokenSigner
from flight_lake.serve import Server
from flight_lake_client import PermissionDenied, Unauthenticated, connect
from tests.support import (
    CHUNK_SCHEMA,
    PASSWORDS,
    SIGNING_KEY,
    auth_section,
    basic,
    error_body,
    put_csv,
)

PEOPLE = b"name,age\nada,36\ngrace,45\n"


def secured(**auth: Any) -> dict[str, dict[str, Any]]:
    """Settings sections for ``serve``: users (``auth`` overrides), Flight only."""
    return {"auth": auth_section(**auth), "http": {"enabled": False}}


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    return serve(**secured())


def logged_in(server: Server, user: str) -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    client = flight.FlightClient(server.flight_uri)
    header = client.authenticate_basic_token(user, PASSWORDS[user])
    return client, flight.FlightCallOptions(headers=[header])


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_handshake_answers_a_bearer_token_that_later_calls_carry(server: Server) -> None:
    client, options = logged_in(server, "writer1")
    token = options.headers[0][1].decode()
    assert token.startswith("Bearer ey")

    with client:
        descriptor = flight.FlightDescriptor.for_command(json.dumps(
            {"op": "ingest", "name": "people", "format": "csv", "mode": "create"}))
        writer, metadata = client.do_put(descriptor, CHUNK_SCHEMA,
                                         options)
        with writer:
            writer.write_batch(pa.record_batch([pa.array([PEOPLE], pa.binary())],
                                               names=["chunk"]))
            writer.done_writing()
            assert json.loads(metadata.read().to_pybytes())["row_count"] == 2
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(json.dumps({"sql": "SELECT sum(age) AS s "
                                                                   "FROM people"})), options)
        table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.column("s").to_pylist() == [81]


def test_a_call_without_credentials_is_unauthenticated(server: Server) -> None:
    with flight.FlightClient(server.flight_uri) as client:
        with pytest.raises(flight.FlightUnauthenticatedError) as raised:
            list(client.list_flights())
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(flight.FlightDescriptor.for_command(
                json.dumps({"sql": "SELECT 1"})))
    assert error_body(raised.value)["error"] == "unauthenticated"


@pytest.mark.parametrize("user, password", [("reader1", "Guess-0451"), ("nobody", "reader-pass-1")])
def test_wrong_password_and_unknown_user_get_the_same_answer(
        server: Server, user: str, password: str) -> None:
    with flight.FlightClient(server.flight_uri) as client, capture_logs() as logs, \
            pytest.raises(flight.FlightUnauthenticatedError) as raised:
        client.authenticate_basic_token(user, password)
    assert error_body(raised.value) == {"error": "unauthenticated",
                                        "detail": "wrong user name or password"}
    failures = [e for e in logs if e["event"] == "auth_failed"]
    assert failures and failures[0]["user"] == user and failures[0]["operation"] == "login"
    assert password not in repr(logs)


def test_basic_credentials_without_base64_padding_are_accepted(server: Server) -> None:
    # The Go Flight SQL driver sends base64 without '='; "reader1:reader-pass-1" needs one.
    header = basic("reader1", PASSWORDS["reader1"], padding=False)
    assert not header.endswith("=")
    with flight.FlightClient(server.flight_uri) as client:
        options = flight.FlightCallOptions(headers=[(b"authorization", header.encode())])
        actions = [a.type for a in client.list_actions(options)]
    assert "catalog.list" in actions


def test_expired_tampered_and_foreign_tokens_are_refused(server: Server) -> None:
    expired, _ = TokenSigner(SIGNING_KEY, [], ttl_seconds=-60).mint("admin1", "admin")
    reader_token, _ = TokenSigner(SIGNING_KEY, [], ttl_seconds=600).mint("reader1", "reader")
    head, claims, signature = reader_token.split(".")
    raised_role = json.loads(base64.urlsafe_b64decode(claims + "=="))
    raised_role["role"] = "admin"
    forged_claims = base64.urlsafe_b64encode(json.dumps(raised_role).encode()).decode()
    tampered = f"{head}.{forged_claims.rstrip('=')}.{signature}"
    foreign, _ = TokenSigner("another-key-" + "x" * 40, [], ttl_seconds=600).mint(
        "admin1", "admin")
    # A foreign key's token relabelled with our key's id: the signature still fails.
    ours_head = reader_token.split(".")[0]
    relabelled = ".".join([ours_head, *foreign.split(".")[1:]])

    with flight.FlightClient(server.flight_uri) as client:
        for token, detail in [(expired, "token expired; log in again"),
                              (tampered, "invalid token signature"),
                              (foreign, "token signed with an unknown key"),
                              (relabelled, "invalid token signature"),
                              ("not-a-token", "malformed token")]:
            with pytest.raises(flight.FlightUnauthenticatedError) as raised:
                list(client.list_flights(options=bearer(token)))
            assert error_body(raised.value)["detail"] == detail
        assert list(client.list_flights(options=bearer(reader_token))) == []


def test_a_reader_cannot_ingest_through_doput_and_nothing_changes(server: Server) -> None:
    client, options = logged_in(server, "reader1")
    command = {"op": "ingest", "name": "people", "format": "csv", "mode": "create"}
    with client, capture_logs() as logs:
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(json.dumps(command)),
                                  CHUNK_SCHEMA, options)
        with pytest.raises(flight.FlightUnauthorizedError) as raised:
            writer.write_batch(pa.record_batch([pa.array([PEOPLE], pa.binary())],
                                               names=["chunk"]))
            writer.done_writing()
            writer.close()
        assert list(client.list_flights(options=options)) == []
    assert error_body(raised.value) == {
        "error": "permission_denied",
        "detail": "ingest needs the writer role; reader1 is a reader"}
    refused = [e for e in logs if e["event"] == "auth_refused"]
    assert refused[0]["user"] == "reader1" and refused[0]["operation"] == "ingest"
    assert refused[0]["address"].startswith("ipv4:127.0.0.1:")


def test_register_needs_a_writer(server: Server) -> None:
    client, options = logged_in(server, "reader1")
    body = json.dumps({"name": "people", "keys": ["datasets/people/x.parquet"]}).encode()
    with client, pytest.raises(flight.FlightUnauthorizedError, match="writer role"):
        list(client.do_action(flight.Action("catalog.register", body), options))


def test_health_shows_only_the_status_to_non_admins(server: Server) -> None:
    bodies = {}
    for user in ("reader1", "admin1"):
        client, options = logged_in(server, user)
        with client:
            result = list(client.do_action(flight.Action("health", b"{}"), options))
        bodies[user] = json.loads(result[0].body.to_pybytes())
    assert bodies["reader1"] == {"status": "ok"}
    assert bodies["admin1"]["status"] == "ok" and "storage" in bodies["admin1"]


def test_failed_logins_past_the_limit_get_busy_with_retry_after(
        serve: Callable[..., Server]) -> None:
    running = serve(**secured(login_failure_limit=3, login_lockout_seconds=120))
    with flight.FlightClient(running.flight_uri) as client:
        for _ in range(3):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token("writer1", "guess")
        with pytest.raises(flight.FlightUnavailableError) as raised:
            client.authenticate_basic_token("writer1", PASSWORDS["writer1"])
        body = error_body(raised.value)
        assert body["error"] == "busy" and 100 < body["retry_after"] <= 120
        # Another user is not locked out by someone guessing writer1's password.
        client.authenticate_basic_token("reader1", PASSWORDS["reader1"])


def test_a_token_works_on_every_replica_that_shares_the_key(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    first = serve(**secured())  # two servers on one lake, each its own spool
    second = serve(**secured(), ingest={"spool_dir": str(tmp_path / "other")})
    client, options = logged_in(first, "reader1")
    client.close()
    with flight.FlightClient(second.flight_uri) as other:
        assert [a.type for a in other.list_actions(options)]


def test_the_project_client_logs_in_with_a_password_or_a_token(server: Server) -> None:
    with connect(server.flight_uri, user="writer1", password=PASSWORDS["writer1"]) as lake:
        lake.ingest_csv(PEOPLE, name="people")
        token = lake.login("reader1", PASSWORDS["reader1"])
        with pytest.raises(PermissionDenied, match="writer role"):
            lake.ingest_csv(PEOPLE, name="people", mode="replace")
    with connect(server.flight_uri, token=token) as lake:
        assert lake.sql("SELECT count(*) AS n FROM people").column("n").to_pylist() == [2]
    with pytest.raises(Unauthenticated, match="wrong user name or password"):
        connect(server.flight_uri, user="reader1", password="nope")
    with connect(server.flight_uri) as lake, pytest.raises(Unauthenticated):
        lake.datasets()


def test_raw_put_helper_is_refused_without_a_token(server: Server) -> None:
    with flight.FlightClient(server.flight_uri) as client, \
            pytest.raises(flight.FlightUnauthenticatedError):
        put_csv(client, "people", PEOPLE)


def test_nothing_secret_reaches_flight_logs_or_error_bodies(server: Server) -> None:
    secrets = [SIGNING_KEY, *PASSWORDS.values()]
    with capture_logs() as logs:
        client, options = logged_in(server, "writer1")
        token = options.headers[0][1].decode().removeprefix("Bearer ")
        bodies = []
        with client:
            put_csv_with(client, options)
            for user, password in (("writer1", "Guess-0451"), ("nobody", PASSWORDS["admin1"])):
                with pytest.raises(flight.FlightUnauthenticatedError) as raised:
                    client.authenticate_basic_token(user, password)
                bodies.append(str(raised.value) + (raised.value.extra_info or b"").decode())
            reader, reader_options = logged_in(server, "reader1")
            with reader, pytest.raises(flight.FlightUnauthorizedError) as refused:
                list(reader.do_action(flight.Action("catalog.register", b'{"name":"x",'
                                                    b'"keys":["k"]}'), reader_options))
            bodies.append(str(refused.value))
            sql = json.dumps({"sql": "SELECT current_setting('s3_secret_access_key')"})
            with pytest.raises(flight.FlightError) as guarded:
                client.get_flight_info(flight.FlightDescriptor.for_command(sql), options)
            bodies.append(str(guarded.value))
    seen = repr(logs) + "".join(bodies)
    for secret in [*secrets, token, "Guess-0451"]:
        assert secret not in seen
    assert any(e["event"] == "auth_failed" and e["user"] == "nobody" for e in logs)


def put_csv_with(client: flight.FlightClient, options: flight.FlightCallOptions) -> None:
    command = {"op": "ingest", "name": "people", "format": "csv", "mode": "create"}
    writer, metadata = client.do_put(flight.FlightDescriptor.for_command(json.dumps(command)),
                                     pa.schema([("chunk", pa.binary())]), options)
    with writer:
        writer.write_batch(pa.record_batch([pa.array([PEOPLE], pa.binary())], names=["chunk"]))
        writer.done_writing()
        assert metadata.read() is not None


def test_the_client_logs_in_again_before_its_token_expires(server: Server) -> None:
    with connect(server.flight_uri, user="reader1", password=PASSWORDS["reader1"]) as lake:
        with capture_logs() as logs:
            assert lake.datasets() == []
        assert [e.get("method") for e in logs if e["event"] == "flight_request"] == [
            "do_action"]
        lake._expires_at = 0.0  # as if the hour had passed
        with capture_logs() as logs:
            assert lake.datasets() == []
        assert [e.get("method") for e in logs if e["event"] == "flight_request"] == [
            "handshake", "do_action"]
    assert lake._expires_at is not None and lake._expires_at > time.time()
