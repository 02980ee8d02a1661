"""Arrow in and out: turning user data into a record batch stream, and results into frames.

pandas and polars are optional; they are imported only when a frame of theirs is passed in
or asked for.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

DtypeBackend = Literal["numpy_nullable", "pyarrow", "numpy"]
BATCH_ROWS = 65_536


def as_reader(data: Any) -> pa.RecordBatchReader:
    """A record batch stream over a Table, RecordBatch(Reader), pandas or polars DataFrame.

    Anything else that speaks the Arrow PyCapsule stream protocol (``__arrow_c_stream__``)
    is accepted too.
    """
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return data.to_reader(max_chunksize=BATCH_ROWS)
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]).to_reader(max_chunksize=BATCH_ROWS)
    library = _library_of(data)
    if library == "pandas":
        # The index is pandas bookkeeping, not data: keep only the columns.
        table = pa.Table.from_pandas(data, preserve_index=False)
        return table.to_reader(max_chunksize=BATCH_ROWS)
    if library == "polars":
        if hasattr(data, "collect"):  # a LazyFrame
            data = data.collect()
        return data.to_arrow().to_reader(max_chunksize=BATCH_ROWS)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise TypeError(
        "ingest takes a pyarrow Table, RecordBatch or RecordBatchReader, or a pandas or "
        f"polars DataFrame; got {type(data).__name__}"
    )


def to_pandas(table: pa.Table, dtype_backend: DtypeBackend = "numpy_nullable") -> Any:
    """``table`` as a pandas DataFrame whose dtypes keep nulls without changing type.

    ``numpy_nullable`` (default) gives ``Int64``, ``Float64``, ``boolean`` and ``string``
    columns, so an integer column with a null stays integer; ``pyarrow`` gives
    ``ArrowDtype`` columns; ``numpy`` is pyarrow's plain conversion (ints with nulls
    become floats). The names follow pandas' own ``dtype_backend`` argument.
    """
    import pandas as pd

    if dtype_backend == "pyarrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    if dtype_backend == "numpy":
        return table.to_pandas()
    if dtype_backend != "numpy_nullable":
        raise ValueError(
            f"dtype_backend must be numpy_nullable, pyarrow or numpy, not {dtype_backend!r}")
    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
        pa.string_view(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=nullable.get)


def to_polars(table: pa.Table) -> Any:
    """``table`` as a polars DataFrame (zero-copy where the types allow)."""
    import polars as pl

    return pl.from_arrow(table)


def _library_of(data: Any) -> str | None:
    """Which optional frame library ``data`` comes from, without importing it."""
    for cls in type(data).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in ("pandas", "polars"):
            return root
    return None
