"""The one way to open a DuckDB database in this process.

DuckDB returns freed memory to the system from allocator background threads, and that
switch is process-wide: every database opened without ``allocator_background_threads``
turns them off again for all the others. Measured: after a query stopped at the memory
budget, the server's RSS stayed at the budget (700 MiB) for good once the SQL guard's
parser database had been opened, and fell back to the start within about 2 s without it.
So every database here, even a scratch one, is opened through :func:`open_database`.
"""

from __future__ import annotations

import duckdb

_ALWAYS: dict[str, str | bool | int | float | list[str]] = {
    "allocator_background_threads": "true",
}


def open_database(config: dict[str, str | bool | int | float | list[str]] | None = None
                  ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB database with ``config`` and the process-wide settings above."""
    return duckdb.connect(":memory:", config={**(config or {}), **_ALWAYS})
