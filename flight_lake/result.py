"""A read's answer: its schema and its record batches, from memory or still being produced.

:meth:`flight_lake.lake.Lake.read` returns a :class:`Result`; a front end only encodes it.
``table`` is set when the whole answer already sits in memory (decoded data objects), so
Flight can hand it to C++ (``RecordBatchStream``) with no Python per batch; otherwise the
batches are produced as they are read (DuckDB's stream, or objects decoded one row group at
a time) and raise ``LakeError``s — ``QueryTimeout`` past the deadline, ``Cancelled`` after
``Lake.cancel(read_id)``. A result must be closed (``with`` or ``close()``), also when it
is not read to its end: that releases the DuckDB cursor or file handle and ends the read.
"""

from __future__ import annotations

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

    @property
    def table(self) -> pa.Table | None:
        """The whole answer when it is already in memory, else None (it streams)."""
        return self._data if isinstance(self._data, pa.Table) else None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The answer batch by batch, whichever form it is in."""
        if isinstance(self._data, pa.Table):
            return iter(self._data.to_batches())
        return self._data

    def read_all(self) -> pa.Table:
        """The whole answer as one table (for small answers and tests); closes the result."""
        with self:
            if isinstance(self._data, pa.Table):
                return self._data
            return pa.Table.from_batches(list(self._data), schema=self.schema)

    def close(self) -> None:
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
