"""Upload pace: what web servers do against slow clients, per upload.

An ingest slot held by a client that stalls or trickles (one byte a second held all four
slots for as long as it liked) is released with a ``timeout`` error to that client when:

- nothing arrived for ``ingest.upload_idle_seconds`` (HTTP, where the body is read on the
  event loop and a wait can be timed out), or
- fewer than ``ingest.upload_min_bytes_per_second`` arrived on average over a window of
  ``ingest.upload_rate_window_seconds`` (HTTP and Flight, checked as bytes arrive).

A Flight DoPut's reader blocks in C++ with no timeout, so ``ReadAhead`` reads it on a
helper thread into a one-item queue and waits on the queue for at most the idle time: a
Flight client that stops sending altogether has its ingest fail and its slot released
after ``ingest.upload_idle_seconds`` too. Its call ends, with the ``timeout`` error, once
it sends again, ends its stream or disconnects (the reader cannot be read after the call
ends, so the handler waits for the helper).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, cast

from flight_lake.errors import QueryTimeout
from flight_lake.settings import IngestSettings

T = TypeVar("T")
_END = object()  # the read raised StopIteration


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


class ReadAhead(Generic[T]):
    """Iterate a blocking ``read`` (``StopIteration`` at the end) through a helper thread,
    so waiting for the client can time out.

    Iterating yields what ``read`` returns and raises what it raises, or ``QueryTimeout``
    (``pace.idle()``) once nothing came for ``pace.idle_seconds`` (the ingest then fails
    and gives its slot back). Use it as a context manager around the call's handler:
    leaving waits for the helper to leave ``read``, because pyarrow's reader must not be
    read once its call has ended. A stalled client's read returns when it sends again,
    ends its stream or disconnects; only then does its call end, with the error.
    """

    def __init__(self, read: Callable[[], T], pace: UploadPace) -> None:
        self._read = read
        self._pace = pace
        self._items: queue.Queue[object] = queue.Queue(maxsize=1)  # one chunk read ahead
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def __iter__(self) -> Iterator[T]:
        self._thread = threading.Thread(target=self._pump, name="upload-reader", daemon=True)
        self._thread.start()
        try:
            while True:
                try:
                    item = self._items.get(timeout=self._pace.idle_seconds)
                except queue.Empty:
                    raise self._pace.idle() from None
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield cast(T, item)
        finally:
            self._stopped.set()

    def _pump(self) -> None:
        while not self._stopped.is_set():
            item: object
            try:
                item = self._read()
            except StopIteration:
                item = _END
            except BaseException as exc:  # handed to the consumer, which raises it
                item = exc
            while not self._stopped.is_set():
                try:
                    self._items.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if item is _END or isinstance(item, BaseException):
                return
