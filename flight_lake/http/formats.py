"""Result encodings for ``POST /v1/sql``: content negotiation and one encoder per format.

Each encoder turns a stream of Arrow record batches into bytes, one batch at a time, so a
result of any size leaves the server in pieces no larger than a batch:

- ``application/json`` (default): one array of row objects, compact (``[{"a":1}]``).
- ``application/x-ndjson``: one row object per line.
- ``text/csv``: a header line, then rows (pyarrow's CSV writer, per batch).
- ``application/vnd.apache.arrow.stream``: the Arrow IPC stream format.
- ``application/vnd.apache.parquet``: a Parquet file, one row group per batch.

JSON values are described in :mod:`flight_lake_client.json_rows`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from flight_lake.errors import InvalidInput, NotAcceptable
from flight_lake_client.json_rows import JsonRows


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    aliases: tuple[str, ...] = ()


JSON = Format("json", "application/json")
NDJSON = Format("ndjson", "application/x-ndjson", ("application/ndjson", "application/jsonl"))
CSV = Format("csv", "text/csv", ("application/csv",))
ARROW = Format(
    "arrow", "application/vnd.apache.arrow.stream", ("application/vnd.apache.arrow",)
)
PARQUET = Format(
    "parquet", "application/vnd.apache.parquet", ("application/x-parquet", "application/parquet")
)
FORMATS: tuple[Format, ...] = (JSON, NDJSON, CSV, ARROW, PARQUET)
_BY_MEDIA_TYPE = {media: fmt for fmt in FORMATS for media in (fmt.media_type, *fmt.aliases)}
_WILDCARDS = {"*/*": JSON, "application/*": JSON, "text/*": CSV}


def negotiate(accept: str | None) -> Format:
    """Pick the format for an ``Accept`` header: highest q wins, ties go to the first named."""
    if accept is None or not accept.strip():
        return JSON
    candidates: list[tuple[float, int, Format]] = []
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = _quality(params)
        fmt = _BY_MEDIA_TYPE.get(media) or _WILDCARDS.get(media)
        if fmt is not None and quality > 0:
            candidates.append((-quality, position, fmt))
    if not candidates:
        supported = ", ".join(fmt.media_type for fmt in FORMATS)
        raise NotAcceptable(f"cannot produce {accept!r}; supported: {supported}")
    return min(candidates, key=lambda item: item[:2])[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


class _Drain(io.RawIOBase):
    """A write-only file that keeps what was written until ``take()`` empties it."""

    def __init__(self) -> None:
        super().__init__()
        self._pieces: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._pieces.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces.clear()
        return data


class Encoder:
    """Bytes for a result: ``begin()`` once, ``batch()`` per record batch, ``end()`` once."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def begin(self) -> bytes:
        return b""

    def batch(self, batch: pa.RecordBatch) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        return b""


class JsonEncoder(Encoder):
    """A JSON array of row objects, or one object per line (``lines=True``): the shared
    encoding of ``flight_lake_client.json_rows``, the same bytes the CLI writes."""

    def __init__(self, schema: pa.Schema, *, lines: bool = False) -> None:
        super().__init__(schema)
        self._rows = JsonRows(lines=lines)

    def begin(self) -> bytes:
        return self._rows.begin()

    def batch(self, batch: pa.RecordBatch) -> bytes:
        return self._rows.batch(batch)

    def end(self) -> bytes:
        return self._rows.end()


class _WriterEncoder(Encoder):
    """An Arrow writer (CSV, IPC stream, Parquet) drained into bytes after each call."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._sink = _Drain()
        self._writer = self._open(self._sink, schema)

    def _open(self, sink: _Drain, schema: pa.Schema) -> Any:
        raise NotImplementedError

    def begin(self) -> bytes:
        return self._sink.take()

    def batch(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:  # an empty batch would be an empty Parquet row group
            self._writer.write_batch(batch)
        return self._sink.take()

    def end(self) -> bytes:
        self._writer.close()
        return self._sink.take()


class CsvEncoder(_WriterEncoder):
    def _open(self, sink: _Drain, schema: pa.Schema) -> Any:
        for field in schema:
            if pa.types.is_nested(field.type):
                raise InvalidInput(
                    f"column {field.name!r} of type {field.type} cannot be written as CSV; "
                    "ask for JSON, NDJSON, Arrow or Parquet"
                )
        return pa_csv.CSVWriter(sink, schema)


class ArrowEncoder(_WriterEncoder):
    def _open(self, sink: _Drain, schema: pa.Schema) -> Any:
        return pa.ipc.new_stream(sink, schema)


class ParquetEncoder(_WriterEncoder):
    def _open(self, sink: _Drain, schema: pa.Schema) -> Any:
        return pq.ParquetWriter(sink, schema, compression="zstd")


def encoder_for(fmt: Format, schema: pa.Schema) -> Encoder:
    if fmt is JSON:
        return JsonEncoder(schema)
    if fmt is NDJSON:
        return JsonEncoder(schema, lines=True)
    factories: dict[str, Callable[[pa.Schema], Encoder]] = {
        CSV.name: CsvEncoder,
        ARROW.name: ArrowEncoder,
        PARQUET.name: ParquetEncoder,
    }
    return factories[fmt.name](schema)
