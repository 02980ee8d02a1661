"""Streaming request bodies into the ingest service, never holding a whole upload.

The ingest service is synchronous: it runs in a worker thread and pulls the CSV as an
iterator of ``bytes``. The request body arrives as an async stream on the event loop.
``run_ingest`` joins the two through a channel of at most ``QUEUE_CHUNKS`` chunks of about
``CHUNK_BYTES`` each: when the ingest falls behind, the channel fills, the body stops being
read, uvicorn stops reading the socket and TCP pushes back on the client. Memory per
upload is therefore a few MiB whatever the file size.

A multipart body is parsed as it streams (python-multipart's ``MultipartParser``); only the
bytes of the ``file`` part reach the ingest, other parts are discarded as they pass. If the
body breaks off (the client hangs up, the multipart is malformed or truncated) the ingest
sees an exception from its iterator, so it deletes what it wrote and commits nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import structlog
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from flight_lake.errors import Cancelled, InvalidInput, LakeError, TooLarge, UnsupportedMediaType
from flight_lake.upload_pace import UploadPace

log = structlog.get_logger()

T = TypeVar("T")

CHUNK_BYTES = 1024 * 1024
QUEUE_CHUNKS = 4
MULTIPART_SLACK = 64 * 1024  # room for the multipart envelope around a file at the limit
FILE_FIELD = "file"
RAW_MEDIA_TYPES = {
    b"",
    b"text/csv",
    b"application/csv",
    b"text/plain",
    b"application/octet-stream",
}


def upload_body(request: Request, max_upload_bytes: int) -> AsyncIterator[bytes]:
    """The uploaded file's bytes, from a multipart ``file`` part or a raw body.

    Refuses before reading anything: an unsupported type (415), a declared length over the
    limit (413), a multipart type without a boundary (400).
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported: send the file as it is, "
            "without the header (gzip and zstd CSV files are recognised and decompressed)")
    media, params = parse_options_header(request.headers.get("content-type"))
    declared = _content_length(request)
    if media == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise InvalidInput("malformed multipart body: the Content-Type has no boundary")
        limit = max_upload_bytes + MULTIPART_SLACK
        _check_declared(declared, limit, max_upload_bytes)
        return MultipartFile(boundary).read(_receive(request), limit)
    if media in RAW_MEDIA_TYPES:
        _check_declared(declared, max_upload_bytes, max_upload_bytes)
        return _receive(request)
    raise UnsupportedMediaType(
        f"cannot ingest Content-Type {media.decode('latin-1')!r}: send multipart/form-data "
        "with a 'file' part, or the raw CSV as text/csv or application/octet-stream",
    )


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidInput(f"invalid Content-Length: {value!r}")
    return int(value)


def _check_declared(declared: int | None, limit: int, max_upload_bytes: int) -> None:
    if declared is not None and declared > limit:
        raise TooLarge(
            f"upload of {declared} bytes is over the limit of {max_upload_bytes} bytes "
            "(ingest.max_upload_bytes)"
        )


async def _receive(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise Cancelled("upload aborted: the client closed the connection") from exc


class MultipartFile:
    """Pulls the ``file`` part's bytes out of a multipart/form-data stream as it arrives."""

    def __init__(self, boundary: bytes) -> None:
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )
        self._header_field = b""
        self._header_value = b""
        self._disposition: bytes | None = None
        self._in_file = False
        self._seen_file = False
        self._ended = False
        self._pending: list[bytes] = []

    async def read(self, body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"multipart body is over the limit of {limit} bytes")
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise InvalidInput(f"malformed multipart body: {exc}") from exc
            pieces, self._pending = self._pending, []
            for piece in pieces:
                yield piece
        if not self._ended:
            raise InvalidInput("malformed multipart body: it ends before the closing boundary")
        if not self._seen_file:
            raise InvalidInput(
                f"multipart body has no {FILE_FIELD!r} part (send -F {FILE_FIELD}=@data.csv)"
            )

    # -- parser callbacks (run inside ``MultipartParser.write``) -------------------------

    def _on_part_begin(self) -> None:
        self._disposition = None
        self._in_file = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_field.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        field = options.get(b"name")
        if field is None:
            raise InvalidInput("malformed multipart body: a part has no Content-Disposition name")
        if field.decode("latin-1") == FILE_FIELD:
            if self._seen_file:
                raise InvalidInput(f"multipart body has more than one {FILE_FIELD!r} part")
            self._in_file = self._seen_file = True

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        self._in_file = False

    def _on_end(self) -> None:
        self._ended = True


class ChunkBridge:
    """An async byte stream, pumped on the event loop, read as a sync iterator elsewhere."""

    def __init__(self, source: AsyncIterator[bytes], max_chunks: int = QUEUE_CHUNKS) -> None:
        self._source = source
        self._send, self._receive = anyio.create_memory_object_stream[bytes](max_chunks)
        self._token = anyio.lowlevel.current_token()
        self._complete = False
        self.error: LakeError | None = None

    async def pump(self) -> None:
        try:
            async for chunk in self._source:
                await self._send.send(chunk)
            self._complete = True  # set before closing, so the reader sees a clean end
        except LakeError as exc:
            self.error = exc
        except Exception as exc:  # a bug, not bad input: keep it visible, fail the ingest
            log.exception("upload_pump_failed")
            self.error = LakeError(f"reading the upload failed: {exc}")
        finally:
            self._send.close()

    def chunks(self) -> Iterator[bytes]:
        """The bytes in order; raises if the body broke off (runs in any thread)."""
        while True:
            try:
                chunk = anyio.from_thread.run(self._receive.receive, token=self._token)
            except anyio.EndOfStream:
                if self._complete:
                    return
                raise self.error or InvalidInput("upload interrupted") from None
            yield chunk

    def close(self) -> None:
        self._receive.close()


async def run_ingest(consume: Callable[[Iterator[bytes]], T], body: AsyncIterator[bytes],
                     pace: UploadPace | None = None) -> T:
    """Run ``consume(chunks)`` in a worker thread, fed from ``body`` with backpressure.

    The first chunk is read before the ingest starts, so a body that is wrong from its
    first byte (malformed multipart, no ``file`` part) is refused without taking an ingest
    slot. If the body breaks off, the body's error is raised rather than the ingest's.
    """
    first = await anext(body, None)
    source = _prepend(first, body)
    bridge = ChunkBridge(_coalesce(source if pace is None else _paced(source, pace)))
    outcome: T | None = None
    failure: Exception | None = None
    # Errors are kept and raised after the task group, which would wrap them in a group.
    async with anyio.create_task_group() as group:
        group.start_soon(bridge.pump)
        try:
            outcome = await anyio.to_thread.run_sync(consume, bridge.chunks())
        except Exception as exc:
            failure = bridge.error or exc
        finally:
            group.cancel_scope.cancel()
            bridge.close()
    if failure is not None:
        raise failure
    return outcome  # type: ignore[return-value]


async def _paced(source: AsyncIterator[bytes], pace: UploadPace) -> AsyncIterator[bytes]:
    """``source``, refused (``QueryTimeout``) once it idles or trickles (see ``UploadPace``)."""
    iterator = source.__aiter__()
    while True:
        try:
            with anyio.fail_after(pace.idle_seconds):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise pace.idle() from None
        pace.observe(len(chunk))
        yield chunk


async def _prepend(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk


async def _coalesce(source: AsyncIterator[bytes], size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """Join small network reads into chunks of about ``size`` (fewer thread hand-offs)."""
    buffer = bytearray()
    async for chunk in source:
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
