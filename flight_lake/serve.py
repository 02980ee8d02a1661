"""Running the server: the Lake, Flight and the HTTP adapter together, and a graceful stop.

``Server(settings)`` is a context manager (tests use it on port 0); ``run(settings)`` is what
``flight-lake serve`` calls: it serves until SIGINT or SIGTERM, then drains — new requests are
refused, running ingests are abandoned and cleaned up, running queries finish.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import structlog

from flight_lake.flight.server import LakeFlightServer
from flight_lake.lake import Lake
from flight_lake.settings import Settings

log = structlog.get_logger()


class Server:
    """The lake behind Flight (and HTTP, unless disabled), listening once entered."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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
        self.lake = Lake.open(settings)
        location = f"grpc://{settings.flight.host}:{settings.flight.port}"
        try:
            self.flight = LakeFlightServer(self.lake, location)
            if settings.http.enabled:
                from flight_lake.http.listener import HttpServer
                from flight_lake.http.routes import create_app

                self.http = HttpServer(create_app(self.lake), settings.http.host,
                                       settings.http.port)
                self.http.start()
        except BaseException:
            self.stop()
            raise
        log.info("server_started", flight=self.flight_uri, http=self.http_uri,
                 storage=self.lake.storage.uri)

    @property
    def flight_port(self) -> int:
        assert self.flight is not None
        return int(self.flight.port)

    @property
    def flight_uri(self) -> str:
        return f"grpc://{self.settings.flight.host}:{self.flight_port}"

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else int(self.http.port)

    @property
    def http_uri(self) -> str | None:
        port = self.http_port
        return None if port is None else f"http://{self.settings.http.host}:{port}"

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


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Server(settings):
            while not stop_requested.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
