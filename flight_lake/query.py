"""Query: read-only SQL over every dataset through DuckDB, streamed as Arrow batches.

INTERFACE STUB — being implemented. Contract:

- ``QueryEngine(storage, catalog, settings)``: one DuckDB database; a view per dataset named
  after it, created at start and refreshed through ``catalog.subscribe`` when a dataset
  changes (never re-created on every request).
- ``schema(sql) -> pa.Schema``: the result schema without running the whole query.
- ``execute(sql) -> pa.RecordBatchReader``: streams the result batch by batch; the query is
  interrupted after ``query.timeout_seconds`` (``QueryTimeout``).
- Refusals: anything but one read-only statement, any file/URL access outside the datasets,
  settings, extension installs → ``InvalidInput`` or ``PermissionDenied``; DuckDB errors in a
  user's SQL (syntax, unknown table) → ``InvalidInput``/``NotFound``.
- ``close()``.
"""

from __future__ import annotations

import pyarrow as pa

from flight_lake.catalog import Catalog
from flight_lake.settings import Settings
from flight_lake.storage import Storage


class QueryEngine:
    def __init__(self, storage: Storage, catalog: Catalog, settings: Settings) -> None:
        self.storage = storage
        self.catalog = catalog
        self.settings = settings

    def schema(self, sql: str) -> pa.Schema:
        raise NotImplementedError

    def execute(self, sql: str) -> pa.RecordBatchReader:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
