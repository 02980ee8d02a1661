"""Helpers the tests share that are not fixtures: settings, raw Flight calls, bounded waits,
users and a throwaway certificate authority for the auth and TLS tests.

Fixtures (storage backends, servers on port 0) live in ``tests/conftest.py``; test modules
import from here, never from each other nor from conftest.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import fsspec
import pyarrow as pa
import pyarrow.flight as flight
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flight_lake.auth.passwords import hash_password
from flight_lake.settings import Settings, StorageSettings, load_settings
from flight_lake_client import FlightLakeClient, Manifest
from flight_lake_client.protocol import CHUNK_SCHEMA

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("local", "s3")  # the storage backends the storage-layer tests run on
SPARK_DIR = "FLIGHT_LAKE_TEST_SPARK_DIR"  # the Spark server's shared folder (conftest.py)
S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"

PEOPLE_CSV = (
    b"id,name,city,born,score,active\n"
    b"1,Ada,London,1815-12-10,97.5,true\n"
    b"2,Grace,New York,1906-12-09,88.0,false\n"
    b"3,Linus,Helsinki,1969-12-28,,true\n"
    b"4,Barbara,New York,1939-11-03,91.25,\n"
)


# -- settings and storage ------------------------------------------------------------


@functools.cache
def _s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY,
                        aws_secret_access_key=S3_SECRET, region_name=S3_REGION)


def make_bucket(endpoint: str) -> str:
    """A new, empty bucket on moto's server (each test its own: nothing is shared)."""
    fsspec.AbstractFileSystem.clear_instance_cache()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    _s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


def s3_storage(endpoint: str, secret: str = S3_SECRET, prefix: str = "prefix") -> StorageSettings:
    """Storage settings for a fresh bucket on moto's server at ``endpoint``."""
    return StorageSettings(
        uri=f"s3://{make_bucket(endpoint)}/{prefix}",
        endpoint_url=endpoint,
        region=S3_REGION,
        access_key_id=S3_KEY,
        secret_access_key=secret,
    )


def backend_storage(backend: str, folder: Path, s3_endpoint: Callable[[], str]
                    ) -> StorageSettings:
    """Storage on ``backend``: ``folder``/lake, or a new bucket at ``s3_endpoint()``."""
    if backend == "s3":
        return s3_storage(s3_endpoint())
    assert backend == "local", backend
    return StorageSettings(uri=str(folder / "lake"))


def make_settings(storage_settings: StorageSettings, tmp_path: Path, **sections: dict) -> Settings:
    """Full settings on ``storage_settings`` with every server on a free loopback port."""
    overrides: dict = {
        "storage": storage_settings.model_dump(),
        "flight": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "ingest": {"spool_dir": str(tmp_path)},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    for secret in ("access_key_id", "secret_access_key"):
        value = overrides["storage"].get(secret)
        if value is not None and hasattr(value, "get_secret_value"):
            overrides["storage"][secret] = value.get_secret_value()
    return load_settings(config_file=None, secrets_file=None, **overrides)


# -- the Flight SQL JDBC driver from a Java program ----------------------------------------

JDBC_PROGRAM = REPO / "tests" / "jdbc" / "FlightSqlJdbc.java"
# Short-lived JVMs: the first JIT tier and the serial collector cost about half the CPU of the
# defaults; the driver reads Arrow buffers through java.nio internals Java 17 closes by default.
JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                "--add-opens=java.base/java.nio=ALL-UNNAMED")


def jdbc_driver_jar() -> Path | None:
    """The Arrow Flight SQL JDBC driver ``.ci/fetch-jdbc-driver`` fetched (or Maven's copy)."""
    pattern = "flight-sql-jdbc-driver-*.jar"
    found = sorted((REPO / ".cache" / "jdbc").glob(pattern)) + sorted(
        (Path.home() / ".m2" / "repository" / "org" / "apache" / "arrow"
         / "flight-sql-jdbc-driver").glob(f"*/{pattern}"))
    return found[-1] if found else None


def compile_jdbc_program(folder: Path) -> str:
    """Compile ``FlightSqlJdbc.java`` into ``folder``; the class path to run it with."""
    for tool in ("java", "javac"):
        assert shutil.which(tool), f"{tool} (a JDK) is needed for the JDBC test"
    jar = jdbc_driver_jar()
    if jar is None:
        raise AssertionError("the Flight SQL JDBC driver is missing: run .ci/fetch-jdbc-driver")
    subprocess.run(["javac", "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC",
                    "-d", str(folder), "-cp", str(jar), str(JDBC_PROGRAM)],
                   check=True, timeout=120)
    return f"{jar}:{folder}"


# -- waiting without racing ------------------------------------------------------------


def wait_until(condition: Callable[[], object], seconds: float = 20,
               what: str = "condition") -> None:
    """Poll ``condition`` until it is true; fail after ``seconds`` (never a bare sleep)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        time.sleep(0.02)


# -- raw pyarrow.flight (no client library) ------------------------------------------


def put_csv(client: flight.FlightClient, name: str, data: bytes | Iterable[bytes],
            mode: str = "create", chunk_size: int = 1 << 20) -> dict[str, Any]:
    """Upload CSV bytes as docs/FLIGHT.md says: `chunk: binary` batches, one PutResult back."""
    command = {"op": "ingest", "name": name, "format": "csv", "mode": mode}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    writer, metadata = client.do_put(descriptor, CHUNK_SCHEMA)
    chunks = ([data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
              if isinstance(data, bytes) else data)
    with writer:
        for chunk in chunks:
            writer.write_batch(pa.record_batch([pa.array([chunk], pa.binary())], CHUNK_SCHEMA))
        writer.done_writing()
        answer = metadata.read()
    assert answer is not None
    return json.loads(answer.to_pybytes())


def put_table(client: flight.FlightClient, name: str, table: pa.Table,
              mode: str = "create") -> dict[str, Any]:
    command = {"op": "ingest", "name": name, "format": "arrow", "mode": mode}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    writer, metadata = client.do_put(descriptor, table.schema)
    with writer:
        writer.write_table(table, max_chunksize=1000)
        writer.done_writing()
        answer = metadata.read()
    assert answer is not None
    return json.loads(answer.to_pybytes())


def sql(client: flight.FlightClient, query: str) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"sql": query})))
    tables = [client.do_get(endpoint.ticket).read_all() for endpoint in info.endpoints]
    return pa.concat_tables(tables)


def action(client: flight.FlightClient, name: str, body: dict | None = None) -> Any:
    results = list(client.do_action(flight.Action(name, json.dumps(body or {}).encode())))
    assert len(results) == 1
    return json.loads(results[0].body.to_pybytes())


def error_body(exc: flight.FlightError) -> dict[str, Any]:
    assert exc.extra_info, f"no extra_info on {exc!r}"
    return json.loads(exc.extra_info)


# -- an upload that holds its ingest slot ----------------------------------------------


class HeldOpenCsv:
    """A CSV file whose second read blocks until released: an upload that keeps its slot."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._sent = False

    def read(self, size: int = -1) -> bytes:
        if not self._sent:
            self._sent = True
            return b"id\n1\n"
        self.release.wait(30)
        return b""


def hold_ingest_slot(lake: FlightLakeClient, name: str) -> tuple[HeldOpenCsv, threading.Thread,
                                                                 list[Manifest]]:
    """Start an upload that takes an ingest slot and keeps it until ``release`` is set."""
    held, results = HeldOpenCsv(), []
    thread = threading.Thread(
        target=lambda: results.append(lake.ingest_csv(held, name=name)), daemon=True)
    thread.start()
    wait_until(lambda: lake.health()["ingests_running"] >= 1, 10, "the held upload")
    return held, thread, results


# -- `flight-lake serve` as a process --------------------------------------------------


class ServeProcess:
    """``python -m flight_lake serve`` on port 0 in ``cwd``; its JSON log lines are read back."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.stderr_path = cwd / "serve.log"
        self._read = 0  # bytes of the log parsed into _events
        self._events: list[dict] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flight_lake", "serve", "--flight-port", "0",
             "--http-port", "0", *args],
            # stderr is a file, not a terminal: the default log format must be JSON lines.
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("wb"),
            env={**{k: v for k, v in os.environ.items() if not k.startswith("FLIGHT_LAKE_")},
                 **(env or {})},
        )
        try:
            self.flight_uri = self.wait_for("server_started")["flight"]
        except BaseException:
            self.kill()
            raise

    def events(self) -> list[dict]:
        """Every JSON event logged so far (each line is parsed once: polls stay cheap)."""
        with self.stderr_path.open("rb") as log:
            log.seek(self._read)
            new = log.read()
        complete = new[:new.rfind(b"\n") + 1]
        self._read += len(complete)
        for line in complete.splitlines():
            try:
                self._events.append(json.loads(line))
            except ValueError:
                continue
        return list(self._events)

    def wait_for(self, event: str, timeout: float = 120) -> dict:
        found: list[dict] = []

        def logged() -> bool:
            found.extend(e for e in self.events() if e.get("event") == event)
            if not found and self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.stderr_path.read_text()}")
            return bool(found)

        try:
            wait_until(logged, timeout, f"{event} event")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.stderr_path.read_text()}") from None
        return found[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.process.send_signal(sig)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- users, and a certificate authority made each session (auth and TLS tests) -----------

PASSWORDS = {"reader1": "reader-pass-1", "writer1": "writer-pass-1", "admin1": "admin-pass-1"}
ROLES = {"reader1": "reader", "writer1": "writer", "admin1": "admin"}
SIGNING_KEY = "test-signing-key-" + secrets.token_urlsafe(32)


@functools.cache
def _hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def auth_section(**overrides: Any) -> dict[str, Any]:
    """An ``[auth]`` section with a reader, a writer and an admin."""
    users = [{"name": name, "role": ROLES[name], "password_hash": stored}
             for name, stored in _hashes().items()]
    return {"users": users, "signing_key": SIGNING_KEY, **overrides}


def basic(user: str, password: str, *, padding: bool = True) -> str:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return "Basic " + (encoded if padding else encoded.rstrip("="))


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.crt", folder / f"{name}.key"
        cert.write_bytes(self.cert)
        key.write_bytes(self.key)
        return cert, key


@dataclass(frozen=True)
class Authority:
    """A CA with the server and client certificates it signed."""

    ca: Pem
    server: Pem
    client: Pem

    def tls_section(self, folder: Path, *, mutual: bool = False) -> dict[str, str]:
        cert, key = self.server.write(folder, "server")
        section = {"cert": str(cert), "key": str(key)}
        if mutual:
            ca_cert, _ = self.ca.write(folder, "ca")
            section["client_ca"] = str(ca_cert)
        return section


@functools.cache
def authority(label: str = "flight_lake test CA") -> Authority:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, usage: x509.ObjectIdentifier, server: bool) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    return Authority(
        ca=Pem(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)),
        server=issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, True),
        client=issue("flight_lake test client", ExtendedKeyUsageOID.CLIENT_AUTH, False),
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
