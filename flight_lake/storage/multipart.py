"""A streaming S3 object writer: multipart upload with a bounded number of parts in flight.

``MultipartWriter(call, bucket, key, part_bytes, in_flight)`` is a write-only file object
(what Parquet's writer writes into). Bytes are buffered up to ``part_bytes``; each full
part is handed to one of ``in_flight`` threads that upload it while the writer goes on
encoding, and ``write`` waits once ``in_flight`` parts are on their way, so at most
``(in_flight + 1) * part_bytes`` of an object is in memory whatever its size. An object
smaller than one part is sent in one ``put_object`` on ``close``; ``abort`` (on any failure)
abandons the multipart upload, so the store keeps nothing of it.

``call(method, **params)`` performs one S3 request (s3fs's ``call_s3``: it runs on fsspec's
event loop, so the threads here only wait for it) and raises ``OSError`` on failure.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

S3Call = Callable[..., Any]


class MultipartWriter:
    """One object being written; see the module docstring."""

    def __init__(self, call: S3Call, bucket: str, key: str, part_bytes: int,
                 in_flight: int) -> None:
        self._call = call
        self._bucket, self._key = bucket, key
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = in_flight
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += view.nbytes
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            self._send(part)
        return view.nbytes

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Parts go out as they fill; nothing to do until ``close``."""

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """Send what is buffered and finish the object (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._upload_id is None:
                self._call("put_object", Bucket=self._bucket, Key=self._key,
                           Body=bytes(self._buffer))
                return
            if self._buffer or not self._parts:
                self._send(bytes(self._buffer))
            parts = [future.result() for future in self._parts]
            self._call("complete_multipart_upload", Bucket=self._bucket, Key=self._key,
                       UploadId=self._upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            self._abandon()
            raise
        finally:
            self._buffer = bytearray()
            self._shutdown()

    def abort(self) -> None:
        """Abandon the object: nothing of it stays in the store."""
        self.closed = True
        self._buffer = bytearray()
        self._abandon()
        self._shutdown()

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            created = self._call("create_multipart_upload", Bucket=self._bucket, Key=self._key)
            self._upload_id = str(created["UploadId"])
            self._pool = ThreadPoolExecutor(max_workers=self._in_flight,
                                            thread_name_prefix="s3-part")
        for sent in self._parts:  # a failed part fails the writer now, not at close
            if sent.done() and sent.exception() is not None:
                sent.result()
        self._slots.acquire()  # at most in_flight parts in memory and on their way
        assert self._pool is not None
        self._parts.append(self._pool.submit(self._upload, len(self._parts) + 1, part))

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        try:
            answer = self._call("upload_part", Bucket=self._bucket, Key=self._key,
                                UploadId=self._upload_id, PartNumber=number, Body=part)
            return {"ETag": answer["ETag"], "PartNumber": number}
        finally:
            self._slots.release()

    def _abandon(self) -> None:
        if self._upload_id is None:
            return
        for sent in self._parts:
            sent.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        # if the abort fails too, the store's lifecycle rules clean up what is left
        with contextlib.suppress(OSError):
            self._call("abort_multipart_upload", Bucket=self._bucket, Key=self._key,
                       UploadId=self._upload_id)
        self._upload_id = None

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
