"""Cancel a Flight SQL read when its client goes away.

A SQL client that gives up on a query (ADBC's ``adbc_cancel``, a closed cursor, a timeout
of its own) only ends its gRPC call: a DuckDB query still computing its first batch would
run on until ``query.timeout_seconds``. While a Flight SQL DoGet runs, one thread polls its
call context every ``poll_seconds`` and cancels the read (``Lake.cancel``) once the client
has gone. The thread starts with the first call watched and sleeps while there is none.

Lock: ``_wake`` (a condition) guards ``_calls`` and is held while a context is polled, so
a call's context is never touched after :meth:`CallWatch.forget` (called when the call
ends). ``Lake.cancel`` is called without it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pyarrow.flight as flight
import structlog

log = structlog.get_logger()


class CallWatch:
    """Polls the call contexts of running reads; thread-safe."""

    def __init__(self, cancel: Callable[[str], bool], poll_seconds: float = 0.05) -> None:
        self._cancel = cancel
        self._poll_seconds = poll_seconds
        self._calls: dict[int, tuple[flight.ServerCallContext, str]] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, context: flight.ServerCallContext, read_id: str) -> int:
        """Watch one call reading ``read_id``; returns the token to :meth:`forget` it by."""
        with self._wake:
            token = next(self._ids)
            self._calls[token] = (context, read_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flightsql-call-watch",
                                                daemon=True)
                self._thread.start()
            elif len(self._calls) == 1:
                self._wake.notify()
        return token

    def forget(self, token: int) -> None:
        with self._wake:
            self._calls.pop(token, None)

    def _run(self) -> None:
        while True:
            gone: list[str] = []
            with self._wake:
                while not self._calls:
                    self._wake.wait()
                self._wake.wait(self._poll_seconds)  # a short read is forgotten meanwhile
                for token, (context, read_id) in list(self._calls.items()):
                    if context.is_cancelled():
                        del self._calls[token]
                        gone.append(read_id)
            for read_id in gone:
                if self._cancel(read_id):
                    log.info("flightsql_read_cancelled", read_id=read_id, reason="client_gone")
