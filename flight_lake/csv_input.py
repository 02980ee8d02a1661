"""The bytes of a CSV upload, as they stream in: what they are, decompressed, counted, digested.

``CsvInput(chunks, max_bytes)`` iterates the CSV text of an upload whose raw bytes arrive as
``chunks`` (bytes-like objects of any size):

- the first bytes say what the upload is. gzip and zstd are decompressed while streaming
  (in blocks of ``BLOCK_BYTES``, so a small file that inflates enormously never sits in
  memory); with ``columnar`` a Parquet or Arrow IPC file passes as it is (``format`` says
  which, for ``columnar_input`` to read); images, PDFs, archives, UTF-16 and other binary
  data (and Parquet or Arrow IPC without ``columnar``, or inside gzip/zstd) are refused with
  ``InvalidInput`` naming what the upload looks like and what to do instead (``format`` in
  the error body), never echoing the bytes themselves;
- ``max_bytes`` caps the CSV text, after decompression (``TooLarge`` past it), or the file;
- ``digest`` (``sha256:<hex>`` of the CSV text or file) and ``size`` are known once iterated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from flight_lake.errors import InvalidInput, LakeError, TooLarge

SNIFF_BYTES = 4096  # how much of the start is looked at before deciding
BLOCK_BYTES = 1024 * 1024  # decompressed bytes produced per step
COMPRESSIONS = {"gzip", "zstd"}
COLUMNAR = {"parquet", "arrow"}  # files ``columnar_input`` reads

# (magic prefix, format, what it looks like, what to do instead)
_SIGNATURES: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "gzip-compressed data", ""),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd-compressed data", ""),
    (b"PAR1", "parquet", "a Parquet file",
     "send its rows as Arrow record batches instead (the Python client's "
     "ingest(pyarrow.parquet.read_table(path)), or Flight DoPut with format \"arrow\")"),
    (b"ARROW1", "arrow", "an Arrow IPC file",
     "send it as Arrow record batches (Flight DoPut with format \"arrow\", or the Python "
     "client's ingest())"),
    (b"\xff\xff\xff\xff", "arrow", "an Arrow IPC stream",
     "send it as Arrow record batches (Flight DoPut with format \"arrow\", or the Python "
     "client's ingest())"),
    (b"\x89PNG\r\n\x1a\n", "png", "a PNG image", "upload a CSV file"),
    (b"\xff\xd8\xff", "jpeg", "a JPEG image", "upload a CSV file"),
    (b"GIF8", "gif", "a GIF image", "upload a CSV file"),
    (b"%PDF-", "pdf", "a PDF document", "upload a CSV file"),
    (b"PK\x03\x04", "zip", "a ZIP archive (or an .xlsx/.docx/.odt document)",
     "extract the CSV, or export the sheet as CSV (gzip and zstd are accepted as they are)"),
    (b"BZh", "bzip2", "bzip2-compressed data",
     "decompress it first, or recompress it with gzip or zstd (accepted as they are)"),
    (b"\xfd7zXZ\x00", "xz", "xz-compressed data",
     "decompress it first, or recompress it with gzip or zstd (accepted as they are)"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "a 7-Zip archive", "extract the CSV first"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole", "an old Office document (.xls/.doc)",
     "export the sheet as CSV"),
    (b"SQLite format 3\x00", "sqlite", "an SQLite database", "export the table as CSV"),
    (b"\x7fELF", "executable", "an executable", "upload a CSV file"),
    (b"\xff\xfe", "utf16", "UTF-16 text", "save the file as UTF-8 CSV"),
    (b"\xfe\xff", "utf16", "UTF-16 text", "save the file as UTF-8 CSV"),
)
_TEXT_CONTROLS = {9, 10, 12, 13}  # tab, newline, form feed, carriage return


def recognise(head: bytes) -> tuple[str, str, str] | None:
    """``(format, looks like, what to do)`` for data that is not plain CSV text, from its
    first bytes; ``None`` for what may be CSV text."""
    for magic, kind, looks_like, todo in _SIGNATURES:
        if head.startswith(magic):
            return kind, looks_like, todo
    sample = head[:SNIFF_BYTES]
    controls = sum(1 for byte in sample if byte < 32 and byte not in _TEXT_CONTROLS)
    if b"\x00" in sample or controls > len(sample) // 20:
        return ("binary", "binary data (control bytes where text was expected)",
                "upload CSV text, UTF-8 encoded")
    return None


class CsvInput:
    """The CSV text of an upload; iterate once. ``digest``, ``size`` and ``compression``
    describe what was read."""

    def __init__(self, chunks: Iterable[Any], max_bytes: int, *, columnar: bool = False) -> None:
        self._chunks = iter(chunks)
        self._max_bytes = max_bytes
        self._columnar = columnar
        self._hash = hashlib.sha256()
        self.size = 0
        self.compression: str | None = None
        self.format = "csv"  # or one of COLUMNAR

    @property
    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"

    def __iter__(self) -> Iterator[memoryview]:
        head = self._head()
        found = recognise(bytes(head[:SNIFF_BYTES])) if head else None
        if found is not None and found[0] in COMPRESSIONS:
            self.compression = found[0]
            yield from self._counted(self._decompressed(head, found[0]))
            return
        if found is not None and self._columnar and found[0] in COLUMNAR:
            self.format = found[0]
            found = None
        _refuse(found)
        yield from self._counted(_prepend(head, self._raw()))

    def _raw(self) -> Iterator[memoryview]:
        for chunk in self._chunks:
            try:
                view = memoryview(chunk).cast("B")  # bytes, bytearray, pa.Buffer...
            except TypeError as exc:
                raise InvalidInput(f"CSV chunks must be bytes: {exc}") from exc
            if view.nbytes:
                yield view

    def _head(self) -> memoryview:
        """At least ``SNIFF_BYTES`` from the start (fewer if the upload is shorter, or if
        fewer already pass the cap: no chunk more is read than the refusal needs)."""
        pieces: list[memoryview] = []
        length = 0
        for view in self._raw():
            pieces.append(view)
            length += view.nbytes
            if length >= min(SNIFF_BYTES, self._max_bytes + 1):
                break
        if len(pieces) == 1:
            return pieces[0]
        return memoryview(b"".join(pieces))

    def _decompressed(self, head: memoryview, compression: str) -> Iterator[memoryview]:
        source = _ChunkFile(_prepend(head, self._raw()))
        try:
            stream = pa.CompressedInputStream(pa.PythonFile(source, mode="r"), compression)
            first = True
            while block := stream.read(BLOCK_BYTES):
                view = memoryview(block).cast("B")
                if first:
                    first = False
                    inner = recognise(bytes(view[:SNIFF_BYTES]))
                    _refuse(inner, inside=compression)
                yield view
        except LakeError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            if source.error is not None:  # the upload itself broke off
                raise source.error from exc
            raise InvalidInput(f"the {compression} data is corrupt or cut short: {exc}",
                               format=compression) from exc

    def _counted(self, views: Iterator[memoryview]) -> Iterator[memoryview]:
        for view in views:
            self.size += view.nbytes
            if self.size > self._max_bytes:
                raise TooLarge(
                    f"upload exceeds ingest.max_upload_bytes ({self._max_bytes} bytes"
                    f"{' of CSV text after decompression' if self.compression else ''})")
            self._hash.update(view)
            yield view


class _ChunkFile:
    """A read-only file over an iterator of byte chunks (what Arrow's decompressor pulls)."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.closed = False
        self.error: LakeError | None = None

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            try:
                self._pending = next(self._chunks, memoryview(b""))
            except LakeError as exc:  # kept: Arrow would turn it into its own error
                self.error = exc
                raise
        if size < 0 or size >= self._pending.nbytes:
            data, self._pending = bytes(self._pending), memoryview(b"")
        else:
            data, self._pending = bytes(self._pending[:size]), self._pending[size:]
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _prepend(head: memoryview, rest: Iterator[memoryview]) -> Iterator[memoryview]:
    if head.nbytes:
        yield head
    yield from rest


def _refuse(found: tuple[str, str, str] | None, inside: str | None = None) -> None:
    if found is None:
        return
    kind, looks_like, todo = found
    where = f"inside the {inside} data, " if inside else ""
    if kind in COMPRESSIONS:
        todo = "compress the CSV once"
    raise InvalidInput(
        f"not CSV text: {where}the upload looks like {looks_like} (from its first bytes); "
        f"{todo}", format=kind)
