"""Response bodies that stream from the synchronous services, a piece at a time.

Each body is a sync generator run step by step in worker threads (the services block).
Opening it does the work that can fail before the first byte (running the query and
encoding its first batches, opening the object), so those errors still become status
codes; an error after the first byte can only cut the response short. The generator is
always closed, also when the client goes away, so DuckDB results and file handles are
released.

Queries go through the lake's one read path (``Lake.read``), as on Flight. A query result
whose encoding fits in ``WHOLE_BODY_BYTES`` is not streamed at all: it is encoded in the
one worker-thread call that runs the query and sent as a plain body with
``Content-Length``. Most answers are that small, and streaming them would cost a thread
hop and a chunked write per piece, several times the work of the encoding itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import IO

import anyio
import anyio.to_thread
import pyarrow as pa
import structlog

from flight_lake.errors import LakeError
from flight_lake.http.formats import Encoder, Format, encoder_for
from flight_lake.lake import Lake
from flight_lake.result import Result
from flight_lake.storage import Storage, check_key

log = structlog.get_logger()

OBJECT_CHUNK_BYTES = 1024 * 1024
WHOLE_BODY_BYTES = 1024 * 1024  # query results up to this size are sent whole, not streamed


def _next_or_none(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


class ResponseAborted(Exception):
    """The body failed after its status line was sent: the connection is cut, not ended."""


async def in_threads(chunks: Iterator[bytes], head: bytes = b"") -> AsyncIterator[bytes]:
    """``head``, then a sync generator driven from the event loop; closed however it ends.

    An error here comes after the status line, so it cannot become a status code. It is
    logged and re-raised as ``ResponseAborted``: the server then drops the connection
    without the final chunk, and the client sees a truncated body rather than a complete
    one that lacks rows.
    """
    finished = False
    try:
        if head:
            yield head
        while True:
            try:
                chunk = await anyio.to_thread.run_sync(_next_or_none, chunks)
            except Exception as exc:
                error = exc.to_dict() if isinstance(exc, LakeError) else {"error": repr(exc)}
                log.warning("http_response_aborted", **error)
                raise ResponseAborted(str(exc)) from exc
            if chunk is None:
                finished = True  # the generator has run its own cleanup
                return
            if chunk:
                yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None and not finished:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


@dataclass(frozen=True)
class QueryResult:
    """An encoded result: the whole body, or its first pieces and a generator of the rest."""

    head: bytes
    rest: Iterator[bytes] | None = None  # None: ``head`` is the complete body


def query_result(lake: Lake, sql: str, fmt: Format) -> QueryResult:
    """Run ``sql`` and encode batches until the result ends or passes ``WHOLE_BODY_BYTES``."""
    result = lake.read(sql)
    # Batches of at most query.batch_rows (stored objects come in whole row groups):
    # bounded pieces to encode.
    batches = _sliced(result, lake.settings.query.batch_rows)
    try:
        encoder = encoder_for(fmt, result.schema)
        pieces = [encoder.begin()]
        size = len(pieces[0])
        while size < WHOLE_BODY_BYTES:
            batch = next(batches, None)
            if batch is None:
                pieces.append(encoder.end())
                batches.close()
                return QueryResult(b"".join(pieces))
            pieces.append(encoder.batch(batch))
            size += len(pieces[-1])
    except BaseException:
        batches.close()
        raise
    return QueryResult(b"".join(pieces), _result_chunks(batches, encoder))


Batches = Generator[pa.RecordBatch, None, None]


def _sliced(result: Result, rows: int) -> Batches:
    with result:
        for batch in result.batches():
            if batch.num_rows <= rows:
                yield batch
                continue
            for offset in range(0, batch.num_rows, rows):
                yield batch.slice(offset, rows)


def _result_chunks(batches: Batches, encoder: Encoder) -> Iterator[bytes]:
    with contextlib.closing(batches):
        for batch in batches:
            yield encoder.batch(batch)
        yield encoder.end()


def stored_object(storage: Storage, key: str) -> tuple[int, Iterator[bytes]]:
    """Open the object at ``key`` (checked) and read its first piece now; (size, chunks)."""
    key = check_key(key)
    stack = contextlib.ExitStack()
    try:
        handle = stack.enter_context(storage.open_read(key))
        size = storage.size(key)
        first = handle.read(OBJECT_CHUNK_BYTES)
    except BaseException:
        stack.close()
        raise
    return size, _object_chunks(stack, handle, first)


def _object_chunks(
    stack: contextlib.ExitStack, handle: IO[bytes], first: bytes
) -> Iterator[bytes]:
    with stack:
        chunk = first
        while chunk:
            yield chunk
            chunk = handle.read(OBJECT_CHUNK_BYTES)
