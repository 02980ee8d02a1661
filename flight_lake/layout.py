"""Layout: how a dataset's objects are arranged, so that reads can skip most of them.

A ``Layout`` names the columns a dataset is partitioned by (Hive-style folders,
``<version>/<column>=<value>/part-<n>.parquet``) and the columns its rows are sorted by
(each upload written in that order, so every object and row group covers a narrow range
and Parquet statistics prune). An empty layout is the flat one: objects in upload order.

The manifest records the layout; ``append`` keeps the dataset's (an append that asks for
another is a conflict), ``create`` and ``replace`` set the one they are given. This module
checks a layout against a schema, names partition folders the way DuckDB's
``hive_partitioning`` reads them back (values percent-encoded, null as
``__HIVE_DEFAULT_PARTITION__``) and gives the view the options that make DuckDB prune by
folder. The writing is :mod:`flight_lake.layout_writer`'s.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flight_lake.database import open_database
from flight_lake.errors import InvalidInput, summarise

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
MAX_PARTITION_COLUMNS = 4
MAX_SORT_COLUMNS = 8
MAX_FOLDER_CHARACTERS = 200  # one partition folder name, encoded (keys stay under S3's 1024)
PARTITION_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SAFE_CHARACTERS = "-._"  # besides letters and digits, kept as they are in a folder name


class Layout(BaseModel):
    """Partition and sort columns of a dataset; both empty: the flat layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition_by: list[str] = Field(default_factory=list, max_length=MAX_PARTITION_COLUMNS)
    sort_by: list[str] = Field(default_factory=list, max_length=MAX_SORT_COLUMNS)

    @property
    def flat(self) -> bool:
        return not self.partition_by and not self.sort_by

    @property
    def order(self) -> list[str]:
        """The order rows are written in: partition columns first, then the sort columns."""
        return [*self.partition_by, *(c for c in self.sort_by if c not in self.partition_by)]

    def describe(self) -> str:
        if self.flat:
            return "flat (no partition_by, no sort_by)"
        return f"partition_by={self.partition_by}, sort_by={self.sort_by}"


def layout_of(partition_by: Any = None, sort_by: Any = None) -> Layout | None:
    """A layout from what a request gave: lists or comma-separated strings; ``None`` when it
    gave neither (an append then keeps the dataset's, a create or replace is flat)."""
    if partition_by is None and sort_by is None:
        return None
    try:
        return Layout(partition_by=_names(partition_by, "partition_by"),
                      sort_by=_names(sort_by, "sort_by"))
    except ValidationError as exc:
        raise InvalidInput(f"invalid layout: {summarise(exc)}") from exc


def _names(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"{what} takes column names, got {item!r}")
        names += [name.strip() for name in item.split(",") if name.strip()]
    return names


def check_layout(layout: Layout, schema: pa.Schema) -> None:
    """``InvalidInput`` naming the column, unless every column of ``layout`` is in ``schema``
    (once each) and every partition column has a name and type a folder can carry."""
    known = set(schema.names)
    for what, columns in (("partition_by", layout.partition_by), ("sort_by", layout.sort_by)):
        if len(set(columns)) != len(columns):
            raise InvalidInput(f"{what} names a column twice: {columns}")
        for column in columns:
            if column not in known:
                raise InvalidInput(f"{what} column {column!r} is not a column of the data "
                                   f"(columns: {', '.join(schema.names)})")
    for column in layout.partition_by:
        if not PARTITION_COLUMN.match(column):
            raise InvalidInput(f"partition_by column {column!r}: a partition column's name must "
                               "be letters, digits and _ (it names a folder)")
        kind = schema.field(column).type
        if not _partitionable(kind):
            raise InvalidInput(f"partition_by column {column!r} is {kind}: partition by a "
                               "string, integer, boolean or date column")


def _partitionable(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
                or pa.types.is_date(kind))


def folder(columns: list[str], values: tuple[Any, ...]) -> str:
    """The partition's folder path, ``a=1/b=x%20y``, as DuckDB's hive reader decodes it."""
    segments = []
    for column, value in zip(columns, values, strict=True):
        text = NULL_PARTITION if value is None else urllib.parse.quote(
            _text(value), safe=_SAFE_CHARACTERS)
        segment = f"{column}={text}"
        if len(segment) > MAX_FOLDER_CHARACTERS:
            raise InvalidInput(f"partition_by column {column!r} has a value of "
                               f"{len(str(value))} characters: too long for a folder name "
                               f"(at most {MAX_FOLDER_CHARACTERS} encoded)")
        segments.append(segment)
    return "/".join(segments)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # integers as digits, dates as ISO 8601: what DuckDB casts back


def view_options(layout: Layout, schema: pa.Schema) -> str:
    """``read_parquet`` options for a dataset's view: Hive partitioning, with each partition
    column typed as it is stored (so the view's schema is the flat one's), or none."""
    if not layout.partition_by:
        return ""
    scratch = open_database()
    try:
        relation = scratch.from_arrow(schema.empty_table())
        types = dict(zip(relation.columns, relation.types, strict=True))
    finally:
        scratch.close()
    entries = ", ".join(f"'{column}': '{types[column]}'" for column in layout.partition_by)
    return f", hive_partitioning = true, hive_types = {{{entries}}}"
