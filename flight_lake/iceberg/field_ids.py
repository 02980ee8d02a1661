"""Parquet field IDs: the Iceberg column IDs written into every data object's schema.

``with_field_ids(schema)`` numbers the columns the way Iceberg numbers a new table's schema
(pyiceberg's ``assign_fresh_schema_ids``): each level's fields first, then depth first into
each nested type (a list's element, a map's key and value). The Parquet writer stores the
number under ``PARQUET:field_id``, so readers that match columns by ID (not by name) find
them; the Iceberg table of a dataset version has exactly these IDs
(docs/adr/0008-iceberg-tables.md). Pure pyarrow: the ingest path imports no pyiceberg.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pyarrow as pa

FIELD_ID = b"PARQUET:field_id"


def with_field_ids(schema: pa.Schema) -> pa.Schema:
    """``schema`` with a field ID on every field, nested ones included."""
    counter = itertools.count(1)
    return pa.schema(_numbered(list(schema), counter), metadata=schema.metadata)


def _numbered(fields: list[pa.Field], counter: Iterator[int]) -> list[pa.Field]:
    ids = [next(counter) for _ in fields]  # one level first, as Iceberg assigns them
    return [_tagged(field.with_type(_nested(field.type, counter)), field_id)
            for field, field_id in zip(fields, ids, strict=True)]


def _nested(kind: pa.DataType, counter: Iterator[int]) -> pa.DataType:
    if pa.types.is_struct(kind):
        return pa.struct(_numbered([kind.field(i) for i in range(kind.num_fields)], counter))
    if pa.types.is_map(kind):
        key_id, value_id = next(counter), next(counter)
        key = _tagged(kind.key_field.with_type(_nested(kind.key_type, counter)), key_id)
        item = _tagged(kind.item_field.with_type(_nested(kind.item_type, counter)), value_id)
        return pa.map_(key, item, keys_sorted=kind.keys_sorted)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
            pa.types.is_fixed_size_list(kind):
        element_id = next(counter)
        element = _tagged(kind.value_field.with_type(_nested(kind.value_type, counter)),
                          element_id)
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(element, kind.list_size)
        return pa.large_list(element) if pa.types.is_large_list(kind) else pa.list_(element)
    return kind


def _tagged(field: pa.Field, field_id: int) -> pa.Field:
    return field.with_metadata({**(field.metadata or {}), FIELD_ID: str(field_id).encode()})
