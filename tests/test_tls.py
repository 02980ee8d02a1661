"""TLS on both front ends with a throwaway CA: grpc+tls and HTTPS, mutual TLS, and the
real clients over it (pyarrow.flight, the project client, ADBC, curl, httpx)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake_client import connect
from tests.support import JAVA_OPTIONS, PASSWORDS, auth_section, authority

PEOPLE = b"name,age\nada,36\ngrace,45\n"
ADBC_ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


@pytest.fixture
def tls_server(serve: Callable[..., Server], tmp_path: Path) -> Server:
    return serve(auth=auth_section(), tls=authority().tls_section(tmp_path / "tls"))


@pytest.fixture
def mutual_server(serve: Callable[..., Server], tmp_path: Path) -> Server:
    return serve(auth=auth_section(),
                 tls=authority().tls_section(tmp_path / "tls", mutual=True))


def test_flight_over_tls_with_the_right_ca(tls_server: Server) -> None:
    assert tls_server.flight_uri.startswith("grpc+tls://127.0.0.1:")
    with connect(tls_server.flight_uri, tls_root_certs=authority().ca.cert,
                 user="writer1", password=PASSWORDS["writer1"]) as lake:
        lake.ingest_csv(PEOPLE, name="people")
        assert lake.sql("SELECT count(*) AS n FROM people").column("n").to_pylist() == [2]


def test_flight_over_tls_refuses_a_server_signed_by_another_ca(tls_server: Server) -> None:
    stranger = authority("some other CA").ca.cert
    with flight.FlightClient(tls_server.flight_uri, tls_root_certs=stranger) as client, \
            pytest.raises(flight.FlightUnavailableError):
        list(client.list_actions())  # through TLS it would be UNAUTHENTICATED
    # Plain gRPC to a TLS port does not get through either.
    plain = tls_server.flight_uri.replace("grpc+tls://", "grpc://")
    with flight.FlightClient(plain) as client, pytest.raises(flight.FlightUnavailableError):
        list(client.list_actions())


def test_mutual_tls_refuses_a_client_without_a_certificate(mutual_server: Server) -> None:
    ca = authority()
    with flight.FlightClient(mutual_server.flight_uri, tls_root_certs=ca.ca.cert) as client, \
            pytest.raises(flight.FlightUnavailableError):
        list(client.list_actions())  # through TLS it would be UNAUTHENTICATED
    stranger = authority("some other CA").client
    with flight.FlightClient(mutual_server.flight_uri, tls_root_certs=ca.ca.cert,
                             cert_chain=stranger.cert, private_key=stranger.key) as client, \
            pytest.raises(flight.FlightUnavailableError):
        list(client.list_actions())  # through TLS it would be UNAUTHENTICATED
    with connect(mutual_server.flight_uri, tls_root_certs=ca.ca.cert,
                 cert_chain=ca.client.cert, private_key=ca.client.key,
                 user="reader1", password=PASSWORDS["reader1"]) as lake:
        assert lake.datasets() == []


def test_https_with_curl_and_httpx(tls_server: Server, tmp_path: Path) -> None:
    assert tls_server.http_uri is not None and tls_server.http_uri.startswith("https://")
    ca_file, _ = authority().ca.write(tmp_path / "client", "ca")
    csv = tmp_path / "people.csv"
    csv.write_bytes(PEOPLE)
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca_file), "-u", f"writer1:{PASSWORDS['writer1']}",
         "-F", f"file=@{csv}", f"{tls_server.http_uri}/v1/ingest?name=people"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and '"row_count":2' in done.stdout, done.stderr
    refused = subprocess.run(
        ["curl", "-sS", "-u", f"writer1:{PASSWORDS['writer1']}",
         f"{tls_server.http_uri}/v1/catalog"],
        capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 60  # curl: the peer's certificate cannot be verified
    context = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(base_url=tls_server.http_uri, verify=context) as http:
        token = http.post("/v1/auth/token", auth=("reader1", PASSWORDS["reader1"])).json()
        listing = http.get("/v1/catalog",
                           headers={"Authorization": f"Bearer {token['access_token']}"})
    assert [m["name"] for m in listing.json()] == ["people"]


def test_https_mutual_tls_needs_a_client_certificate(mutual_server: Server,
                                                     tmp_path: Path) -> None:
    ca = authority()
    ca_file, _ = ca.ca.write(tmp_path / "client", "ca")
    cert, key = ca.client.write(tmp_path / "client", "client")
    anonymous = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(base_url=str(mutual_server.http_uri), verify=anonymous) as http, \
            pytest.raises(httpx.TransportError):
        http.get("/health")
    with_cert = ssl.create_default_context(cafile=str(ca_file))
    with_cert.load_cert_chain(str(cert), str(key))
    with httpx.Client(base_url=str(mutual_server.http_uri), verify=with_cert) as http:
        assert http.get("/health").json() == {"status": "ok"}


def test_adbc_with_username_and_password_over_tls(tls_server: Server) -> None:
    with connect(tls_server.flight_uri, tls_root_certs=authority().ca.cert,
                 user="writer1", password=PASSWORDS["writer1"]) as lake:
        lake.ingest_csv(PEOPLE, name="people")
    options = {ADBC_ROOT_CERTS: authority().ca.cert.decode()}
    with flight_sql.connect(tls_server.flight_uri, db_kwargs={
            "username": "reader1", "password": PASSWORDS["reader1"], **options},
            autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT sum(age) AS s FROM people")
        assert cursor.fetchall() == [(81,)]
        # Flight SQL ingest is the same operation as DoPut's: a reader may not.
        with pytest.raises(adbc_driver_manager.Error, match="writer role"):
            cursor.adbc_ingest("more", pa.table({"x": [1]}), mode="create")
    with pytest.raises(adbc_driver_manager.Error, match="wrong user name or password"), \
            flight_sql.connect(tls_server.flight_uri, db_kwargs={
                "username": "reader1", "password": "Guess-0451", **options},
                autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    with flight_sql.connect(tls_server.flight_uri, db_kwargs={
            "username": "writer1", "password": PASSWORDS["writer1"], **options},
            autocommit=True) as connection, connection.cursor() as cursor:
        assert cursor.adbc_ingest("more", pa.table({"x": [1]}), mode="create") == 1


@pytest.mark.slow
def test_jdbc_with_user_and_password_over_tls(tls_server: Server, tmp_path: Path,
                                              jdbc_classpath: str) -> None:
    """The Arrow Flight SQL JDBC driver (DBeaver's) logs in through the same handshake."""
    with connect(tls_server.flight_uri, tls_root_certs=authority().ca.cert,
                 user="writer1", password=PASSWORDS["writer1"]) as lake:
        lake.ingest(pa.table({"id": [1, 2, 3], "name": ["ada", "bob", "cy"]}), name="people")
    ca_file, _ = authority().ca.write(tmp_path / "client", "ca")
    address = tls_server.flight_uri.removeprefix("grpc+tls://")

    def run(user: str, password: str) -> subprocess.CompletedProcess[str]:
        url = (f"jdbc:arrow-flight-sql://{address}/?useEncryption=true&user={user}"
               f"&password={password}&tlsRootCerts={ca_file}")
        return subprocess.run(
            ["java", *JAVA_OPTIONS, "-cp", jdbc_classpath, "FlightSqlJdbc", url, "people"],
            capture_output=True, text=True, timeout=120, check=False)

    done = run("reader1", PASSWORDS["reader1"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert ["query", "3", "cy"] in [line.split("\t") for line in done.stdout.splitlines()]
    refused = run("reader1", "Guess-0451")
    assert refused.returncode != 0
    assert "wrong user name or password" in refused.stderr
