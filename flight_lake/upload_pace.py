"""Upload pace: what web servers do against slow clients, per upload.

An ingest slot held by a client that stalls or trickles (one byte a second held all four
slots for as long as it liked) is released with a ``timeout`` error to that client when:

- nothing arrived for ``ingest.upload_idle_seconds`` (HTTP, where the body is read on the
  event loop and a wait can be timed out), or
- fewer than ``ingest.upload_min_bytes_per_second`` arrived on average over a window of
  ``ingest.upload_rate_window_seconds`` (HTTP and Flight, checked as bytes arrive).

A Flight client that stops sending altogether is not caught here: pyarrow's DoPut reader
blocks in C++ with no timeout; it is released when the client's connection ends.
"""

from __future__ import annotations

import time

from flight_lake.errors import QueryTimeout
from flight_lake.settings import IngestSettings


class UploadPace:
    """Counts one upload's bytes; ``observe`` raises once it falls below the minimum rate."""

    def __init__(self, settings: IngestSettings) -> None:
        self.idle_seconds = settings.upload_idle_seconds
        self.min_rate = settings.upload_min_bytes_per_second
        self.window = settings.upload_rate_window_seconds
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def observe(self, nbytes: int) -> None:
        now = time.monotonic()
        self._window_bytes += nbytes
        elapsed = now - self._window_start
        if elapsed < self.window:
            return
        rate = self._window_bytes / elapsed
        if self.min_rate and rate < self.min_rate:
            raise QueryTimeout(
                f"the upload is too slow: {rate:.0f} bytes/s over the last {elapsed:.0f} s, "
                f"under ingest.upload_min_bytes_per_second ({self.min_rate}); its ingest "
                "slot was released")
        self._window_start, self._window_bytes = now, 0

    def idle(self) -> QueryTimeout:
        return QueryTimeout(
            f"the upload sent nothing for ingest.upload_idle_seconds ({self.idle_seconds:g} s); "
            "its ingest slot was released")
