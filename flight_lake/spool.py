"""The upload spool: an upload's CSV text copied to a temporary file as it arrives, and
read back while it is still arriving.

``Spool.receiving(upload, directory)`` creates the file (holding an ``flock`` on it while
the ingest lives, so ``collect`` at start-up leaves it alone), and starts one thread that
iterates ``upload`` (a ``CsvInput``: sniffed, decompressed, counted, digested) into it. The
ingest meanwhile parses what has arrived: ``reader()`` is a file object from the start of
the upload whose reads wait for bytes not yet received, so receiving, parsing and writing
Parquet overlap. Arrow's CSV reader reads ahead of its parsing (up to 32 blocks, on its I/O
thread): ``read_buffer`` hands it buffers of Arrow's pool and counts those it still holds,
waiting while they would pass ``READAHEAD_BYTES`` (or ``READAHEAD_BLOCKS`` of its reads), so
a wide file read in 16 MiB blocks is not held whole in memory. The file stays whole until
the ingest ends, so a pass that must be redone (a column that stops converting late in the
file, a row longer than a block, quoted line breaks the fast chunker cannot follow) reads it
again from disk through a reader as bounded: memory stays bounded whatever the upload's size.

The upload's own failures (``TooLarge``, not CSV text, a dropped client, a shutdown) are
kept and raised by ``complete()`` and by any read that waits on them. Leaving the context
stops the thread (it drops what still arrives) and removes the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from types import TracebackType

import pyarrow as pa
import structlog

from flight_lake import scratch
from flight_lake.csv_input import CsvInput
from flight_lake.errors import Cancelled, InvalidInput, LakeError

log = structlog.get_logger()

PREFIX, SUFFIX = "flight-lake-upload-", ".csv"
READAHEAD_BYTES = 32 << 20  # what a reader's caller may hold of what it read, at most...
READAHEAD_BLOCKS = 3  # ...or this many of its reads, if more (Arrow holds three to go on)
STALL_SECONDS = 10.0  # a read waiting this long with nothing released grows the bound


class Spool:
    """One upload's spool file, written by its receiving thread; see the module docstring."""

    def __init__(self, path: str, descriptor: int, upload: CsvInput) -> None:
        self.path = path
        self.upload = upload
        self._descriptor = descriptor
        self._received = 0
        self._done = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._receive, name="upload-spool", daemon=True)

    @classmethod
    @contextlib.contextmanager
    def receiving(cls, upload: CsvInput, directory: str | None) -> Iterator[Spool]:
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            descriptor, path = scratch.claim_file(directory, PREFIX, SUFFIX)
        except OSError as exc:
            raise LakeError(f"cannot create the upload spool file: {exc}") from exc
        try:
            spool = cls(path, descriptor, upload)
            spool._thread.start()
            try:
                yield spool
            finally:
                spool._abandon()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(descriptor)

    @property
    def digest(self) -> str:
        return self.upload.digest

    @property
    def size(self) -> int:
        return self._received

    @property
    def error(self) -> BaseException | None:
        return self._error

    def complete(self) -> None:
        """Wait until the whole upload is in the file; raise its failure if it failed."""
        with self._changed:
            self._changed.wait_for(lambda: self._done)
            if self._error is not None:
                raise self._error

    def reader(self, readahead_bytes: int = READAHEAD_BYTES) -> SpoolReader:
        """A new file object reading the upload from its start (see ``SpoolReader``); its
        caller may hold ``readahead_bytes`` of what it read (or ``READAHEAD_BLOCKS`` reads)."""
        return SpoolReader(self, readahead_bytes)

    def _read_at(self, offset: int, size: int) -> pa.Buffer:
        """Up to ``size`` bytes at ``offset`` in a buffer of Arrow's memory pool, waiting
        until they arrived (fewer only at the end of the upload); the upload's failure if it
        failed first."""
        with self._changed:  # held while reading too: the file is closed only after _abandon
            self._changed.wait_for(lambda: self._done or self._received >= offset + size)
            if self._error is not None:
                raise self._error
            if self._abandoned:
                raise Cancelled("the ingest ended")
            available = max(0, min(size, self._received - offset))
            buffer = pa.allocate_buffer(available)
            view, done = memoryview(buffer), 0
            while done < available:
                got = os.preadv(self._descriptor, [view[done:]], offset + done)
                if got <= 0:
                    raise LakeError("the upload spool file is shorter than what was received")
                done += got
            return buffer

    def _receive(self) -> None:
        last = b""
        try:
            with open(self.path, "wb", buffering=0) as out:
                for view in self.upload:
                    if self._abandoned:
                        return
                    out.write(view)
                    last = bytes(view[-1:])
                    self._advance(view.nbytes)
                if self.upload.size == 0:
                    raise InvalidInput("line 1: empty CSV file (no header row)", line=1)
                if self.upload.format == "csv" and last not in (b"\n", b"\r"):
                    # Arrow needs a line end (a Parquet or Arrow IPC file is kept as it is)
                    out.write(b"\n")
                    self._advance(1)
        except OSError as exc:
            self._finish(LakeError(f"cannot spool the upload: {exc}"))
        except BaseException as exc:  # handed to the ingest, which raises it
            self._finish(exc)
        else:
            self._finish(None)
        finally:
            self._finish(None)  # no-op if finished: readers never wait for an ended thread

    def _advance(self, nbytes: int) -> None:
        with self._changed:
            self._received += nbytes
            self._changed.notify_all()

    def _finish(self, error: BaseException | None) -> None:
        with self._changed:
            if self._done:
                return
            self._error, self._done = error, True
            self._changed.notify_all()

    def _abandon(self) -> None:
        """Stop receiving (what still arrives is dropped) and wake every waiting read."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()
        self._thread.join()


class SpoolReader:
    """A read-only, forward-only file over a ``Spool`` (what Arrow's CSV reader pulls):
    ``read_buffer`` (which Arrow calls) and ``read`` wait for bytes not yet received, return
    nothing at the upload's end or once closed, and raise the upload's failure.

    ``read_buffer`` also waits while the buffers it handed out and the caller still holds
    would pass the read-ahead bound (see the module docstring); should nothing be released
    for ``STALL_SECONDS``, the bound grows instead of waiting for ever. Close the reader
    before dropping an Arrow reader that may be waiting in it: Arrow waits for its read."""

    def __init__(self, spool: Spool, readahead_bytes: int = READAHEAD_BYTES) -> None:
        self._spool = spool
        self._readahead = readahead_bytes
        self._offset = 0
        self._held = 0  # bytes of buffers handed out that are still alive
        self._released = threading.Condition()  # re-entrant: a release may run anywhere
        self.closed = False

    def read_buffer(self, size: int = -1) -> pa.Buffer:
        if self.closed:
            return pa.allocate_buffer(0)
        if size is None or size < 0:
            self._spool.complete()
            size = max(0, self._spool.size - self._offset)
        with self._released:
            while not (self.closed or not self._held or
                       self._held + size <= max(self._readahead, READAHEAD_BLOCKS * size)):
                if not self._released.wait(STALL_SECONDS):
                    # Nothing released for that long: the caller may need more of its reads
                    # alive than the bound lets it hold (Arrow holds three of its blocks).
                    # Never wait for ever: the bound grows by this read.
                    self._readahead = self._held + size
                    log.warning("spool_readahead_grown", bytes=self._readahead)
            if self.closed:
                return pa.allocate_buffer(0)
        buffer = self._spool._read_at(self._offset, size)
        self._offset += buffer.size
        if buffer.size:
            with self._released:
                self._held += buffer.size
            weakref.finalize(buffer, self._release, buffer.size)
        return buffer

    def read(self, size: int = -1) -> bytes:
        return self.read_buffer(size).to_pybytes()

    @property
    def held(self) -> int:
        """Bytes of the buffers ``read_buffer`` handed out that are still alive."""
        return self._held

    def _release(self, nbytes: int) -> None:
        with self._released:
            self._held -= nbytes
            self._released.notify_all()

    def tell(self) -> int:
        return self._offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        with self._released:
            self.closed = True
            self._released.notify_all()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def collect(directory: str | None) -> list[str]:
    """Remove spool files that crashed ingests left behind (at start-up): a live ingest,
    in this or another server process on this machine, holds a lock on its own."""
    removed = scratch.collect(directory, f"{PREFIX}*{SUFFIX}")
    if removed:
        log.info("spool_files_collected", files=len(removed), directory=directory)
    return removed
