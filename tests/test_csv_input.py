"""What an upload is, from its first bytes: CSV text passes, gzip and zstd are decompressed
while streaming under the cap, everything else is refused by name without echoing it."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_lake.csv_input import BLOCK_BYTES, CsvInput
from flight_lake.errors import Cancelled, InvalidInput, TooLarge

CSV = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(50_000))


def chunked(data: bytes, size: int = 65_536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def read(upload: CsvInput) -> bytes:
    return b"".join(bytes(view) for view in upload)


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("encode", [lambda d: d, gzip.compress, zstd],
                         ids=["plain", "gzip", "zstd"])
@pytest.mark.parametrize("chunk", [3, 65_536])
def test_csv_text_comes_out_whole_with_its_digest(encode, chunk: int) -> None:
    upload = CsvInput(chunked(encode(CSV), chunk), max_bytes=10 * len(CSV))
    assert read(upload) == CSV
    assert upload.size == len(CSV)
    assert upload.digest == "sha256:" + hashlib.sha256(CSV).hexdigest()


def test_compression_is_named_and_concatenated_gzip_members_are_read() -> None:
    members = gzip.compress(CSV[:1000]) + gzip.compress(CSV[1000:])
    upload = CsvInput([members], max_bytes=10 * len(CSV))
    assert read(upload) == CSV
    assert upload.compression == "gzip"


def test_the_cap_counts_decompressed_bytes() -> None:
    with pytest.raises(TooLarge, match="after decompression"):
        read(CsvInput([gzip.compress(CSV)], max_bytes=len(CSV) - 1))
    with pytest.raises(TooLarge):
        read(CsvInput(chunked(CSV), max_bytes=len(CSV) - 1))


def test_a_zip_bomb_hits_the_cap_in_bounded_memory() -> None:
    """512 MiB of "0" in half a MiB of gzip: refused at 8 MiB, decompressing block by block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * BLOCK_BYTES  # text, so only the cap stops it
    bomb = b"".join(compressor.compress(zeros) for _ in range(512)) + compressor.flush()
    assert len(bomb) < 1024 * 1024
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    largest = 0
    upload = CsvInput(chunked(bomb), max_bytes=8 * BLOCK_BYTES)
    with pytest.raises(TooLarge):
        for view in upload:
            assert view.nbytes <= BLOCK_BYTES
            largest = max(largest, pool.bytes_allocated() - before)
    assert upload.size <= 9 * BLOCK_BYTES
    assert largest < 16 * BLOCK_BYTES


def test_cut_off_compressed_data_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="gzip data is corrupt or cut short") as caught:
        read(CsvInput([gzip.compress(CSV)[:4000]], max_bytes=10 * len(CSV)))
    assert caught.value.to_dict()["format"] == "gzip"


def test_the_upload_breaking_off_inside_compressed_data_keeps_its_own_error() -> None:
    def cancelled() -> Iterator[bytes]:
        yield gzip.compress(CSV)[:5000]
        raise Cancelled("the client went away")

    with pytest.raises(Cancelled):
        read(CsvInput(cancelled(), max_bytes=10 * len(CSV)))


def parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), sink)
    return sink.getvalue().to_pybytes()


def arrow_stream_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"a": [1, 2]})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_file_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"a": [1, 2]})
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
       b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\x0f\x00\x01\x01\x01\x00\x18\xdd\x8d\xb0")


@pytest.mark.parametrize(("data", "kind", "words"), [
    (parquet_bytes(), "parquet", "a Parquet file"),
    (arrow_stream_bytes(), "arrow", "an Arrow IPC stream"),
    (arrow_file_bytes(), "arrow", "an Arrow IPC file"),
    (PNG, "png", "a PNG image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg", "a JPEG image"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf", "a PDF document"),
    (b"PK\x03\x04\x14\x00\x06\x00", "zip", "a ZIP archive"),
    (b"BZh91AY&SY", "bzip2", "bzip2-compressed data"),
    ("id,name\n1,Ada\n".encode("utf-16"), "utf16", "UTF-16 text"),
    (b"id,name\n1,\x00\x01\x02\x03\x04\x05\x06", "binary", "binary data"),
    (gzip.compress(parquet_bytes()), "parquet", "inside the gzip data"),
    (gzip.compress(gzip.compress(CSV)), "gzip", "compress the CSV once"),
])
def test_what_is_not_csv_text_is_refused_by_name(data: bytes, kind: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        read(CsvInput(chunked(data, 5), max_bytes=1 << 30))
    body = caught.value.to_dict()
    assert body["format"] == kind
    assert body["detail"].startswith("not CSV text: ")
    assert words in body["detail"]
    assert body["detail"].isascii() and body["detail"].isprintable()  # never the bytes


def test_text_with_a_utf8_bom_tabs_and_crlf_is_csv() -> None:
    data = b"\xef\xbb\xbfid\tname\r\n1\tAda\r\n"
    assert read(CsvInput([data], max_bytes=1000)) == data
