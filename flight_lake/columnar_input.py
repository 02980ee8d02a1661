"""Parquet and Arrow IPC files as uploads: validated, schema-checked, then stored.

An upload whose first bytes say Parquet or Arrow IPC (``csv_input.recognise``) is spooled
like a CSV file, then read here:

- ``parquet_to_parts``: the footer and every page are read once (a file that does not
  decode is refused), the schema must be storable (and match ``expected`` when the
  dataset or the transaction already fixes one), and the file is then stored **as it is**,
  as one data object: its row groups, encodings and compression are the writer's. Only a
  layout (``partition_by``, ``sort_by``) makes it rewritten, as the layout writer writes.
- ``ipc_to_parts``: an Arrow IPC file or stream is read batch by batch into Parquet parts,
  like an Arrow upload (Parquet is what the lake stores), in the layout asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from flight_lake.catalog import DataObject, schema_fingerprint
from flight_lake.errors import Conflict, InvalidInput
from flight_lake.layout import Layout
from flight_lake.layout_writer import BatchSink, layout_writer
from flight_lake.settings import IngestSettings
from flight_lake.storage import Storage

COPY_BYTES = 1024 * 1024  # the stored copy of a Parquet file is written in pieces this size


def parquet_to_parts(storage: Storage, prefix: str, path: str, expected: pa.Schema | None,
                     check: Callable[[pa.Schema], None], settings: IngestSettings,
                     layout: Layout) -> tuple[pa.Schema, list[DataObject]]:
    """Check the Parquet file at ``path`` and store it under ``prefix`` as one object (or,
    with a layout, rewritten in it)."""
    try:
        handle = pq.ParquetFile(path)
        schema = handle.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"not a readable Parquet file: {exc}", format="parquet") from exc
    schema = schema.remove_metadata()
    _check_expected(schema, expected)
    check(schema)
    rows = 0
    writer = None if layout.flat else layout_writer(storage, prefix, schema, settings, layout)
    try:
        for batch in handle.iter_batches(batch_size=65_536):
            rows += batch.num_rows
            if writer is not None:
                writer.write(pa.record_batch(batch.columns, schema=schema))
    except (pa.ArrowException, OSError) as exc:
        _abort(writer)
        raise InvalidInput(f"the Parquet file does not decode: {exc}", format="parquet") from exc
    except BaseException:
        _abort(writer)
        raise
    if rows != handle.metadata.num_rows:
        _abort(writer)
        raise InvalidInput(f"the Parquet footer says {handle.metadata.num_rows} rows, the "
                           f"pages hold {rows}", format="parquet")
    if writer is not None:
        return schema, writer.close()
    key = f"{prefix}/part-0.parquet"
    with open(path, "rb") as source, storage.open_write(key) as target:
        while piece := source.read(COPY_BYTES):
            target.write(piece)
        size = target.tell()
    return schema, [DataObject(key=key, size=size, row_count=rows)]


def ipc_to_parts(storage: Storage, prefix: str, path: str, expected: pa.Schema | None,
                 check: Callable[[pa.Schema], None], settings: IngestSettings,
                 layout: Layout) -> tuple[pa.Schema, list[DataObject]]:
    """Read the Arrow IPC file (or stream) at ``path`` into Parquet parts under ``prefix``."""
    with pa.memory_map(path) as source:
        schema, batches = _ipc_batches(source)
        schema = schema.remove_metadata()
        _check_expected(schema, expected)
        check(schema)
        writer = layout_writer(storage, prefix, schema, settings, layout)
        try:
            for batch in batches:
                writer.write(batch.replace_schema_metadata(None))
            return schema, writer.close()
        except (pa.ArrowException, OSError) as exc:
            writer.abort()
            raise InvalidInput(f"the Arrow IPC data does not decode: {exc}",
                               format="arrow") from exc
        except BaseException:
            writer.abort()
            raise


def _abort(writer: BatchSink | None) -> None:
    if writer is not None:
        writer.abort()


def _ipc_batches(source: pa.NativeFile) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    try:
        reader = pa.ipc.open_file(source)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        source.seek(0)
    try:
        stream = pa.ipc.open_stream(source)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"not a readable Arrow IPC file or stream: {exc}",
                           format="arrow") from exc
    return stream.schema, iter(stream)


def _check_expected(schema: pa.Schema, expected: pa.Schema | None) -> None:
    """The file's columns must be the ones already fixed, by name, type and nullability."""
    if expected is None or schema_fingerprint(schema) == schema_fingerprint(expected):
        return
    raise Conflict(f"the columns differ from those already fixed: "
                   f"{_difference(schema, expected)}")


def _difference(schema: pa.Schema, expected: pa.Schema) -> str:
    if schema.names != expected.names:
        return f"this file has {', '.join(schema.names)}, not {', '.join(expected.names)}"
    for got, wanted in zip(schema, expected, strict=True):
        if got.type != wanted.type or got.nullable != wanted.nullable:
            return (f"column {got.name!r} is {got.type}{'' if got.nullable else ' not null'} "
                    f"here, not {wanted.type}{'' if wanted.nullable else ' not null'}")
    return "the schemas differ"  # pragma: no cover (fingerprints differ only as above)
