"""Run the HTTP adapter with uvicorn in a background thread, beside the Flight server.

``start()`` binds the socket itself (so port 0 gives a free port, known at once as
``.port``) and returns once uvicorn is accepting connections. ``stop()`` asks uvicorn to
exit: it stops accepting, lets in-flight requests finish (up to ``grace_seconds``), then
the thread ends. No signal handlers are installed: the process's owner (``serve``) handles
SIGINT/SIGTERM and calls ``stop()``.

The socket is made with ``IPPROTO_TCP`` as its protocol, so asyncio turns Nagle's
algorithm off (``TCP_NODELAY``) on every connection it accepts. Without it, a response
written in two pieces (head, then body) on a keep-alive connection waits for the client's
delayed ACK: ~40 ms a request.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp

from flight_lake.errors import Unavailable
from flight_lake.http.protocol import BoundedHttpToolsProtocol

log = structlog.get_logger()

STARTUP_TIMEOUT_SECONDS = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn, whose accepted connections send without delay.

    Not ``uvicorn.Config.bind_socket()``: it creates the socket with protocol 0, and asyncio
    sets ``TCP_NODELAY`` only on sockets whose protocol is ``IPPROTO_TCP``. The option is
    also set on the listening socket, which Linux copies to each accepted one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen for HTTP on {host}:{port}: {exc}") from exc
    return sock


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals belong to the process's owner, never to this thread


class HttpServer:
    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 3110, *,
        grace_seconds: float = 30.0, ssl: dict[str, Any] | None = None,
        max_header_bytes: int = 64 * 1024, max_headers: int = 100,
    ) -> None:
        self.host = host
        self.scheme = "https" if ssl else "http"
        self.requested_port = port
        self.grace_seconds = grace_seconds
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,  # AccessLog writes one structlog event per request
            server_header=False,
            timeout_graceful_shutdown=math.ceil(grace_seconds),
            **(ssl or {}),  # ssl_certfile, ssl_keyfile, ssl_ca_certs, ssl_cert_reqs
            http=BoundedHttpToolsProtocol.with_limits(max_header_bytes, max_headers),
        )
        self._server = _ThreadServer(self._config)
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise Unavailable("the HTTP server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> HttpServer:
        """Bind, start serving in a thread, and return once connections are accepted."""
        self._socket = listening_socket(self.host, self.requested_port)
        self._port = int(self._socket.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name="flight-lake-http", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise Unavailable("the HTTP server did not start")
            time.sleep(0.01)
        log.info("http_listening", host=self.host, port=self.port)
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, and join the thread."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(self.grace_seconds + 5)
            if self._thread.is_alive():  # a request outlived the grace period
                self._server.force_exit = True
                self._thread.join(5)
            self._thread = None
            log.info("http_stopped", port=self._port)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
