"""A read's answer: its schema and its record batches, from memory or still being produced.

:meth:`flight_lake.lake.Lake.read` returns a :class:`Result`; a front end only encodes it.
``table`` is set when the whole answer already sits in memory (decoded data objects), so
Flight can hand it to C++ (``RecordBatchStream``) with no Python per batch; otherwise the
batches are produced as they are read (DuckDB's stream, or objects decoded one row group at
a time) and raise ``LakeError``s — ``QueryTimeout`` past the deadline, ``Cancelled`` after
``Lake.cancel(read_id)``. A result must be closed (``with`` or ``close()``), also when it
is not read to its end: that releases the DuckDB cursor or file handle and ends the read.

A client that stops reading leaves its stream suspended between two batches, holding its
DuckDB result; at the read's deadline the watchdog calls :meth:`Result.abandon`, which
closes it from that thread (unless a batch is being produced right then: that one is
interrupted instead), and the next batch asked for raises the deadline's error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from types import TracebackType

import pyarrow as pa

Batches = Generator[pa.RecordBatch, None, None]


class Result:
    """One read's answer; iterate :meth:`batches` once, then :meth:`close` it."""

    def __init__(self, schema: pa.Schema, data: pa.Table | Batches, read_id: str,
                 on_close: Callable[[], None] | None = None) -> None:
        self.schema = schema
        self.read_id = read_id
        self._data = data
        self._on_close = on_close
        self._closed = False
        self._turn = threading.Lock()  # held while a batch is produced, and while closing
        self._abandoned: Exception | None = None

    @property
    def table(self) -> pa.Table | None:
        """The whole answer when it is already in memory, else None (it streams)."""
        return self._data if isinstance(self._data, pa.Table) else None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The answer batch by batch, whichever form it is in."""
        if isinstance(self._data, pa.Table):
            return iter(self._data.to_batches())
        return self._taking_turns(self._data)

    def abandon(self, error: Exception) -> bool:
        """Close the result from another thread, unless a batch is being produced right now
        (then False: try again later); the reader's next batch raises ``error``."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            if not self._closed:
                self._abandoned = error
                self._close()
        finally:
            self._turn.release()
        return True

    def _taking_turns(self, data: Batches) -> Iterator[pa.RecordBatch]:
        while True:
            with self._turn:
                if self._abandoned is not None:
                    raise self._abandoned
                batch = next(data, None)
            if batch is None:
                return
            yield batch

    def read_all(self) -> pa.Table:
        """The whole answer as one table (for small answers and tests); closes the result."""
        with self:
            if isinstance(self._data, pa.Table):
                return self._data
            return pa.Table.from_batches(list(self._data), schema=self.schema)

    def close(self) -> None:
        with self._turn:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not isinstance(self._data, pa.Table):
                self._data.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> Result:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
