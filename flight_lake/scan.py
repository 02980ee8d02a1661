"""Scans: a dataset's data objects as Arrow, served from the object cache without DuckDB.

Two requests are answered by reading data objects whole: one object of a dataset (Flight's
per-object tickets) and ``SELECT * FROM <dataset>``, whose answer is the dataset's objects
in order. Both front ends call this service (Flight's DoGet, HTTP's ``POST /v1/sql``) and
encode what it returns: a ``pa.Table`` when every object is already decoded in memory, or
a generator that decodes the objects as it goes (and fills the cache). Why the scan path
skips DuckDB: docs/adr/0006-scan-path.md.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import NamedTuple

import pyarrow as pa

from flight_lake.catalog import Catalog
from flight_lake.errors import NotFound
from flight_lake.object_cache import ObjectCache
from flight_lake.query import QueryEngine

# `SELECT * FROM <dataset>`: optional quotes, any case and whitespace, a trailing `;`.
_NAME = r"[a-z_][a-z0-9_]{0,62}"
_SELECT_ALL = re.compile(
    rf'\s*select\s+\*\s+from\s+(?:"(?P<quoted>{_NAME})"|(?P<bare>{_NAME}))\s*;?\s*\Z',
    re.IGNORECASE)

Batches = Generator[pa.RecordBatch, None, None]


class Scan(NamedTuple):
    """A scan's answer: its schema, and the data in memory or still to be decoded."""

    schema: pa.Schema
    data: pa.Table | Batches  # a generator raises LakeErrors; whoever reads it closes it

    def batches(self) -> Batches:
        """The data as record batches, whichever form it is in."""
        if isinstance(self.data, pa.Table):
            return (batch for batch in self.data.to_batches())
        return self.data


class ScanService:
    """Whole data objects and plain ``SELECT *`` scans; thread-safe."""

    def __init__(self, catalog: Catalog, query: QueryEngine, objects: ObjectCache) -> None:
        self.catalog = catalog
        self.query = query
        self.objects = objects
        # dataset -> (manifest version, schema of SELECT * if the objects may answer it)
        self._scan_schemas: dict[str, tuple[int, pa.Schema | None]] = {}

    def dataset_object(self, name: str, key: str) -> Scan:
        """One data object of ``name``'s current manifest; NotFound if ``key`` is not one."""
        manifest = self.catalog.get(name)
        if key not in {o.key for o in manifest.objects}:
            raise NotFound(f"{key} is not an object of dataset {name}")
        return self._objects(manifest.arrow_schema(), [key])

    def whole_dataset(self, sql: str) -> Scan | None:
        """The answer to ``sql`` if it is exactly ``SELECT * FROM <dataset>``, else None.

        Such a query's answer is the dataset's objects in order, but only when DuckDB would
        answer with the very same schema (checked once per dataset version, through
        ``query.schema``, which also runs the SQL guard). Otherwise — another query, an
        unknown name, types DuckDB changes such as ``large_string`` — the caller asks DuckDB.
        """
        match = _SELECT_ALL.match(sql)
        if match is None:
            return None
        name = (match.group("quoted") or match.group("bare")).lower()
        try:
            manifest = self.catalog.get(name)
        except NotFound:
            return None  # DuckDB gives the error (or finds a table function)
        known = self._scan_schemas.get(name)
        if known is None or known[0] != manifest.version:
            schema = self.query.schema(sql)
            same = schema.equals(manifest.arrow_schema(), check_metadata=False)
            known = (manifest.version, schema if same else None)
            self._scan_schemas[name] = known
        if known[1] is None:
            return None
        return self._objects(known[1], [o.key for o in manifest.objects])

    def _objects(self, schema: pa.Schema, keys: list[str]) -> Scan:
        """Data objects in order: from memory when all are cached, else decoded as they go."""
        tables = [self.objects.get(key) for key in keys]
        if all(table is not None for table in tables):
            whole = [_conform(table, schema) for table in tables if table is not None]
            return Scan(schema, pa.concat_tables(whole) if whole else schema.empty_table())
        return Scan(schema, self._decoded(schema, keys, tables))

    def _decoded(self, schema: pa.Schema, keys: list[str],
                 tables: list[pa.Table | None]) -> Batches:
        for key, table in zip(keys, tables, strict=True):
            if table is None:
                for batch in self.objects.batches(key):
                    yield _conform(batch, schema)
            else:
                yield from _conform(table, schema).to_batches()


def _conform(data: pa.Table | pa.RecordBatch, schema: pa.Schema,
             ) -> pa.Table | pa.RecordBatch:
    """``data`` under ``schema`` (same names and types; metadata may differ): no copy."""
    return data if data.schema.equals(schema) else data.cast(schema)
