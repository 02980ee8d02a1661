"""The HTTP/1.1 protocol under uvicorn, with limits on the request head.

uvicorn's httptools protocol accepts a request head of any size: a client sending header
lines forever grows the server's memory without end (200,000 headers of 1 KB took 222 MiB
and were never answered). This subclass counts the head's bytes and header lines as they
arrive and answers ``431`` with the lake's JSON error body, then closes the connection,
once the head is over ``http.max_header_bytes`` or has more than ``http.max_headers``
lines. A body is not counted here (uploads have their own limits).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose head is too large
    (httptools turns it into a parser error, which uvicorn answers through
    ``send_400_response``; the refusal noted beforehand makes that a 431)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools under uvicorn, refusing request heads over the configured limits."""

    max_header_bytes = 64 * 1024
    max_headers = 100

    _head_bytes = 0
    _field_bytes = 0  # the URL and header names and values parsed so far
    _header_count = 0
    _in_head = True
    _refusal: str | None = None

    @classmethod
    def with_limits(cls, max_header_bytes: int, max_headers: int) -> type[HttpToolsProtocol]:
        """A protocol class for ``uvicorn.Config(http=…)`` with these limits."""
        return type("BoundedHttpTools", (cls,), {
            "max_header_bytes": max_header_bytes, "max_headers": max_headers})

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # still inside the head (say one endless header line): httptools buffers it
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(f"the request head is over http.max_header_bytes "
                         f"({self.max_header_bytes} bytes)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._field_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        self._check_field_bytes()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._field_bytes += len(name) + len(value)
        self._check_field_bytes()
        if self._header_count > self.max_headers:
            self._refusal = (f"the request has more than http.max_headers "
                             f"({self.max_headers}) header lines")
            raise _HeadTooLarge(self._refusal)
        super().on_header(name, value)

    def _check_field_bytes(self) -> None:
        if self._field_bytes > self.max_header_bytes:
            self._refusal = (f"the request head is over http.max_header_bytes "
                             f"({self.max_header_bytes} bytes)")
            raise _HeadTooLarge(self._refusal)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    def _refuse(self, detail: str) -> None:
        if self.transport.is_closing():
            return
        body = json.dumps({"error": "too_large", "detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
