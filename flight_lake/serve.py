"""Running the server: the Lake, Flight and the HTTP adapter together, and a graceful stop.

``Server(settings)`` is a context manager (tests use it on port 0); ``run(settings)`` is what
``flight-lake serve`` calls: it serves until SIGINT or SIGTERM, then drains — new requests are
refused, running ingests are abandoned and cleaned up, running queries finish.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import ssl
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import pyarrow as pa
import structlog

from flight_lake.auth import Authenticator
from flight_lake.errors import InvalidInput, Unavailable
from flight_lake.flight.server import LakeFlightServer
from flight_lake.lake import Lake
from flight_lake.settings import Settings, TlsSettings

log = structlog.get_logger()


class Server:
    """The lake behind Flight (and HTTP, unless disabled), listening once entered.

    With users configured every call needs credentials (``flight_lake/auth``); with none,
    it serves open only on loopback addresses unless ``insecure_no_auth``.
    """

    def __init__(self, settings: Settings, *, insecure_no_auth: bool = False) -> None:
        self.settings = settings
        self.insecure_no_auth = insecure_no_auth
        self.lake: Lake | None = None
        self.flight: LakeFlightServer | None = None
        self.http: Any = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        settings = self.settings
        authenticator = Authenticator.from_settings(settings.auth)
        check_exposure(settings, authenticator is not None, self.insecure_no_auth)
        self.lake = Lake.open(settings)
        location = f"{self.flight_scheme}://{settings.flight.host}:{settings.flight.port}"
        try:
            try:
                self.flight = LakeFlightServer(self.lake, location, authenticator=authenticator,
                                               **flight_tls(settings.tls))
            except (pa.ArrowException, OSError) as exc:  # gRPC says only "did not start"
                raise Unavailable(_listen_failure("Flight", settings.flight.host,
                                                  settings.flight.port, exc)) from exc
            if settings.http.enabled:
                from flight_lake.http.listener import HttpServer
                from flight_lake.http.routes import create_app

                self.http = HttpServer(create_app(self.lake, authenticator), settings.http.host,
                                       settings.http.port, ssl=http_tls(settings.tls),
                                       max_header_bytes=settings.http.max_header_bytes,
                                       max_headers=settings.http.max_headers)
                self.http.start()
        except BaseException:
            self.stop()
            raise
        log.info("server_started", flight=self.flight_uri, http=self.http_uri,
                 storage=self.lake.storage.uri, auth=authenticator is not None,
                 tls=settings.tls.enabled, mtls=settings.tls.client_ca is not None)

    @property
    def flight_port(self) -> int:
        assert self.flight is not None
        return int(self.flight.port)

    @property
    def flight_scheme(self) -> str:
        return "grpc+tls" if self.settings.tls.enabled else "grpc"

    @property
    def flight_uri(self) -> str:
        return f"{self.flight_scheme}://{self.settings.flight.host}:{self.flight_port}"

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else int(self.http.port)

    @property
    def http_uri(self) -> str | None:
        port = self.http_port
        scheme = "https" if self.settings.tls.enabled else "http"
        return None if port is None else f"{scheme}://{self.settings.http.host}:{port}"

    def stop(self) -> None:
        """Drain and stop: refuse new calls, abandon uploads, let queries finish."""
        if self.lake is None:
            return
        started = time.perf_counter()
        self.lake.drain()
        self.lake.ingest.shutdown()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.flight is not None:
            self.flight.shutdown()
            self.flight = None
        self.lake.close()
        self.lake = None
        log.info("server_stopped", seconds=round(time.perf_counter() - started, 3))


def _listen_failure(what: str, host: str, port: int, exc: BaseException) -> str:
    """Why ``host:port`` cannot be listened on, found by binding it ourselves."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.bind((host.strip("[]"), port))
        reason = str(exc)
    except OSError as bind_error:
        reason = bind_error.strerror or str(bind_error)
    finally:
        probe.close()
    return f"cannot listen for {what} on {host}:{port}: {reason}"


def check_exposure(settings: Settings, has_users: bool, insecure_no_auth: bool) -> None:
    """Refuse to serve without users on anything but loopback, unless told to."""
    hosts = [settings.flight.host] + ([settings.http.host] if settings.http.enabled else [])
    exposed = [host for host in hosts if not is_loopback(host)]
    if has_users or not exposed:
        return
    if insecure_no_auth:
        log.warning("serving_without_auth", hosts=exposed)
        return
    raise InvalidInput(
        f"refusing to serve {exposed[0]} without users: add one with "
        "`flight-lake users add NAME --role admin`, bind 127.0.0.1, or pass --insecure-no-auth")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def flight_tls(tls: TlsSettings) -> dict[str, Any]:
    """``FlightServerBase`` arguments for TLS (and mutual TLS with ``client_ca``)."""
    if tls.cert is None or tls.key is None:
        return {}
    arguments: dict[str, Any] = {
        "tls_certificates": [(tls.cert.read_bytes(), tls.key.read_bytes())]}
    if tls.client_ca is not None:
        arguments.update(verify_client=True, root_certificates=tls.client_ca.read_bytes())
    return arguments


def http_tls(tls: TlsSettings) -> dict[str, Any] | None:
    """uvicorn's TLS settings from the same files."""
    if tls.cert is None or tls.key is None:
        return None
    arguments: dict[str, Any] = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    if tls.client_ca is not None:
        arguments.update(ssl_ca_certs=str(tls.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return arguments


def run(settings: Settings, *, insecure_no_auth: bool = False) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Server(settings, insecure_no_auth=insecure_no_auth):
            while not stop_requested.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
