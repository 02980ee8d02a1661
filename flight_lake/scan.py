"""Scans: a dataset's data objects as Arrow, served from the object cache without DuckDB.

Two reads are answered by reading data objects whole: one object of a dataset (Flight's
per-object tickets) and ``SELECT * FROM <dataset>``, whose answer is the dataset's objects
in order. The read path (:mod:`flight_lake.reads`) decides when; this service returns a
``pa.Table`` when every object is already decoded in memory, or a generator that decodes
the objects as it goes (filling the cache) and checks the read's deadline before each batch.
Why the scan path skips DuckDB: docs/adr/0006-scan-path.md.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from flight_lake.catalog import Catalog, Manifest
from flight_lake.errors import NotFound
from flight_lake.object_cache import ObjectCache
from flight_lake.result import Batches
from flight_lake.watchdog import Deadline


class Scan(NamedTuple):
    """A scan's answer: its schema, and the data in memory or still to be decoded."""

    schema: pa.Schema
    data: pa.Table | Batches  # a generator raises LakeErrors; whoever reads it closes it


class ScanService:
    """Whole data objects and plain ``SELECT *`` scans; thread-safe (it holds no state)."""

    def __init__(self, catalog: Catalog, objects: ObjectCache) -> None:
        self.catalog = catalog
        self.objects = objects

    def dataset_object(self, name: str, key: str, deadline: Deadline) -> Scan:
        """One data object of ``name``'s current manifest; NotFound if ``key`` is not one.

        A ticket another replica handed out may name a version committed there a moment
        ago: an object this server does not know sends it to storage for the latest first.
        """
        try:
            manifest: Manifest | None = self.catalog.get(name)
        except NotFound:
            manifest = None
        if manifest is None or key not in {o.key for o in manifest.objects}:
            manifest = self.catalog.refresh_dataset(name)
            if manifest is None:
                raise NotFound(f"unknown dataset: {name}")
            if key not in {o.key for o in manifest.objects}:
                raise NotFound(f"{key} is not an object of dataset {name}")
        return self._objects(manifest.arrow_schema(), [key], deadline)

    def dataset(self, manifest: Manifest, schema: pa.Schema, deadline: Deadline) -> Scan:
        """Every object of ``manifest`` in order, under ``schema`` (equal to the manifest's)."""
        return self._objects(schema, [o.key for o in manifest.objects], deadline)

    def _objects(self, schema: pa.Schema, keys: list[str], deadline: Deadline) -> Scan:
        """Data objects in order: from memory when all are cached, else decoded as they go."""
        tables = [self.objects.get(key) for key in keys]
        if all(table is not None for table in tables):
            whole = [_conform(table, schema) for table in tables if table is not None]
            return Scan(schema, pa.concat_tables(whole) if whole else schema.empty_table())
        return Scan(schema, self._decoded(schema, keys, tables, deadline))

    def _decoded(self, schema: pa.Schema, keys: list[str], tables: list[pa.Table | None],
                 deadline: Deadline) -> Batches:
        for key, table in zip(keys, tables, strict=True):
            if table is None:
                batches = self.objects.batches(key)
                try:
                    for batch in batches:
                        deadline.check()
                        yield _conform(batch, schema)
                finally:
                    batches.close()
            else:
                for batch in _conform(table, schema).to_batches():
                    deadline.check()
                    yield batch


def _conform(data: pa.Table | pa.RecordBatch, schema: pa.Schema,
             ) -> pa.Table | pa.RecordBatch:
    """``data`` under ``schema`` (same names and types; metadata may differ): no copy."""
    return data if data.schema.equals(schema) else data.cast(schema)
