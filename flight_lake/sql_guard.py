"""SQL guard: admit exactly one read-only statement that can read only the datasets.

This is the second of two layers that keep the SQL endpoint read-only (DESIGN.md, SQL).
The first is DuckDB's own hardening, set once by the query engine (no external access
outside ``datasets/``, configuration locked, no extension autoload). This layer decides
from the parsed statement, before anything runs:

- exactly one statement, else ``InvalidInput``;
- its type is ``SELECT`` (which includes ``WITH``, ``VALUES``, ``FROM``-first,
  ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and the ``PRAGMA``s DuckDB rewrites into a
  ``SELECT``) or ``EXPLAIN [ANALYZE]`` of such a ``SELECT``; anything else — DDL, DML,
  ``COPY``, ``ATTACH``, ``SET``, ``INSTALL``/``LOAD``, ``CALL``, setting ``PRAGMA``s,
  transactions — is ``PermissionDenied``;
- its syntax tree (DuckDB's ``json_serialize_sql``) names no file or URL as a table,
  calls only the table functions in ``ALLOWED_TABLE_FUNCTIONS`` (so no ``read_csv``,
  ``read_parquet``, ``glob``, ``read_text``, ``query``, ``duckdb_secrets``,
  ``duckdb_settings``…) and none of ``DENIED_FUNCTIONS``; else ``PermissionDenied``.

The verdict depends on the text alone, so it is cached per text (bounded LRU).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import duckdb

from flight_lake.errors import InvalidInput, LakeError, PermissionDenied

# Table functions a query may call: generators and read-only views of the catalog.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "duckdb_columns",
    "duckdb_constraints",
    "duckdb_databases",
    "duckdb_functions",
    "duckdb_keywords",
    "duckdb_schemas",
    "duckdb_tables",
    "duckdb_types",
    "duckdb_views",
    "pragma_table_info",
    "pragma_show",
    "pragma_version",
})

# Scalar functions that reveal the server's environment or configuration.
DENIED_FUNCTIONS = frozenset({"getenv", "current_setting", "which_secret"})

# A table "name" with one of these is a file path or URL (a replacement scan).
_PATH_CHARACTERS = re.compile(r"[/\\:.~]")
_EXPLAIN_PREFIX = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*EXPLAIN\s+(?:ANALY[SZ]E\s+)?",
    re.IGNORECASE | re.DOTALL,
)
_CACHE_SIZE = 1024

_Verdict = tuple[type[LakeError] | None, str]


class SqlGuard:
    """Checks SQL text; ``check`` returns the one statement's text that is safe to run."""

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._cache: OrderedDict[str, _Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def check(self, connection: duckdb.DuckDBPyConnection, sql: str) -> str:
        """The statement to execute, or raise ``InvalidInput``/``PermissionDenied``."""
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidInput("empty query: send one SELECT statement")
        with self._lock:
            verdict = self._cache.get(sql)
            if verdict is not None:
                self._cache.move_to_end(sql)
        if verdict is None:
            verdict = _judge(connection, sql)
            with self._lock:
                self._cache[sql] = verdict
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        refusal, text = verdict
        if refusal is not None:
            raise refusal(text)
        return text


def _judge(connection: duckdb.DuckDBPyConnection, sql: str) -> _Verdict:
    try:
        return None, _checked_statement(connection, sql)
    except (InvalidInput, PermissionDenied) as refusal:
        return type(refusal), refusal.detail


def _checked_statement(connection: duckdb.DuckDBPyConnection, sql: str) -> str:
    statements = _parse(connection, sql)
    if not statements:
        raise InvalidInput("empty query: send one SELECT statement")
    if len(statements) > 1:
        raise InvalidInput(
            f"one statement per request: got {len(statements)} (remove the extra ';')"
        )
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        text = statement.query
        _check_tree(connection, text)
    elif kind == duckdb.StatementType.EXPLAIN:
        text = statement.query
        match = _EXPLAIN_PREFIX.match(text)
        inner = _parse(connection, text[match.end():]) if match else []
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            raise PermissionDenied("only EXPLAIN [ANALYZE] of a SELECT is allowed")
        _check_tree(connection, inner[0].query)
    else:
        raise PermissionDenied(
            f"the SQL endpoint is read-only: {_kind_name(kind)} statements are refused; "
            "send one SELECT"
        )
    if not text.strip():
        raise PermissionDenied("this statement cannot be checked; send one plain SELECT")
    return text


def _parse(connection: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(connection.extract_statements(sql))
    except duckdb.Error as exc:
        raise InvalidInput(str(exc)) from exc


def _check_tree(connection: duckdb.DuckDBPyConnection, select_sql: str) -> None:
    row = connection.execute("SELECT json_serialize_sql(?)", [select_sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no result"}
    if tree.get("error"):
        raise InvalidInput(f"cannot check this query: {tree.get('error_message', 'unknown')}")
    for node in _nodes(tree.get("statements", [])):
        node_type = node.get("type")
        if node_type == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if _PATH_CHARACTERS.search(name):
                raise PermissionDenied(
                    f"reading files or URLs from SQL is not allowed ({name!r}); "
                    "query a dataset by its name"
                )
        elif node_type == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise PermissionDenied(
                    f"table function {name or '?'}() is not allowed: SQL may read the "
                    "catalog's datasets and nothing else"
                )
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS:
                raise PermissionDenied(f"function {name}() is not allowed")


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in the serialized tree, depth first."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _kind_name(kind: Any) -> str:
    name = getattr(kind, "name", None)
    return str(name) if name and name != "???" else "non-SELECT"
