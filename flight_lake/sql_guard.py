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

The verdict — the statement to run, and whether it is exactly ``SELECT * FROM <dataset>``
(:attr:`Statement.scan_of`, read off the same tree, so the read path can stream the stored
objects instead) — depends on the text alone, so it is cached by a digest of the text in a
bounded LRU that this guard owns, under its one lock (taken alone: nothing is called under
it).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import duckdb

from flight_lake.errors import InvalidInput, LakeError, PermissionDenied, Unavailable

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



class Statement(NamedTuple):
    """One admitted statement: its text, the digest of the SQL sent, what it scans whole."""

    text: str
    digest: bytes
    scan_of: str | None  # the dataset name if the statement is exactly SELECT * FROM it


_Verdict = Statement | tuple[type[LakeError], str]


def sql_digest(sql: str) -> bytes:
    """The key every cache of per-query facts uses (never the text itself)."""
    return hashlib.blake2b(sql.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SqlGuard:
    """Checks SQL text; ``check`` returns the one statement that is safe to run."""

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._cache: OrderedDict[bytes, _Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Parsing needs a DuckDB connection but no data: a database of its own, so a
        # verdict never waits for, or touches, the query engine's database.
        self._parser = duckdb.connect(":memory:")

    def close(self) -> None:
        self._parser.close()

    def check(self, sql: str) -> Statement:
        """The statement to execute, or raise ``InvalidInput``/``PermissionDenied``."""
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidInput("empty query: send one SELECT statement")
        digest = sql_digest(sql)
        with self._lock:
            verdict = self._cache.get(digest)
            if verdict is not None:
                self._cache.move_to_end(digest)
        if verdict is None:
            try:
                connection = self._parser.cursor()
            except duckdb.Error as exc:  # closed at shutdown
                raise Unavailable("the SQL guard is closed") from exc
            try:
                verdict = _judge(connection, sql, digest)
            finally:
                connection.close()
            with self._lock:
                self._cache[digest] = verdict
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if isinstance(verdict, Statement):
            return verdict
        refusal, detail = verdict
        raise refusal(detail)


def _judge(connection: duckdb.DuckDBPyConnection, sql: str, digest: bytes) -> _Verdict:
    try:
        text, scan_of = _checked_statement(connection, sql)
    except (InvalidInput, PermissionDenied) as refusal:
        return type(refusal), refusal.detail
    return Statement(text, digest, scan_of)


def _checked_statement(connection: duckdb.DuckDBPyConnection, sql: str) -> tuple[str, str | None]:
    statements = _parse(connection, sql)
    if not statements:
        raise InvalidInput("empty query: send one SELECT statement")
    if len(statements) > 1:
        raise InvalidInput(
            f"one statement per request: got {len(statements)} (remove the extra ';')"
        )
    statement = statements[0]
    kind = statement.type
    scan_of = None
    if kind == duckdb.StatementType.SELECT:
        text = statement.query
        scan_of = _plain_scan(_check_tree(connection, text))
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
    return text, scan_of


def _parse(connection: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(connection.extract_statements(sql))
    except duckdb.Error as exc:
        raise InvalidInput(str(exc)) from exc


def _check_tree(connection: duckdb.DuckDBPyConnection, select_sql: str) -> dict[str, Any]:
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
    return tree


_NO_STAR_OPTIONS = ("exclude_list", "replace_list", "rename_list", "qualified_exclude_list")


def _plain_scan(tree: dict[str, Any]) -> str | None:
    """The table name if the tree is exactly ``SELECT * FROM <table>`` (alias allowed).

    Anything that changes rows or columns — a modifier (LIMIT, ORDER BY, DISTINCT), a CTE,
    WHERE, GROUP BY, HAVING, QUALIFY, SAMPLE, a star with options, another column, a
    schema other than ``main``, a time-travel clause — is not a plain scan.
    """
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    if (node.get("type") != "SELECT_NODE" or node.get("modifiers")
            or (node.get("cte_map") or {}).get("map")
            or any(node.get(key) for key in ("where_clause", "group_expressions", "group_sets",
                                              "having", "sample", "qualify"))):
        return None
    select = node.get("select_list") or []
    if len(select) != 1:
        return None
    star = select[0]
    if (star.get("class") != "STAR" or star.get("columns") or star.get("expr")
            or star.get("relation_name") or any(star.get(key) for key in _NO_STAR_OPTIONS)):
        return None
    source = node.get("from_table") or {}
    if (source.get("type") != "BASE_TABLE" or source.get("sample")
            or source.get("at_clause") or source.get("column_name_alias")
            or source.get("schema_name") not in ("", "main")
            or source.get("catalog_name") not in ("", "memory")):
        return None
    name = str(source.get("table_name", ""))
    return name.lower() or None


def table_names(sql: str) -> list[str]:
    """The tables ``sql`` reads (not its CTEs), sorted, from DuckDB's parser alone (no
    binding); empty if it does not parse."""
    parser = duckdb.connect(":memory:")
    try:
        row = parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    except duckdb.Error:
        return []
    finally:
        parser.close()
    tree = json.loads(row[0]) if row else {}
    named: set[str] = set()
    ctes: set[str] = set()
    for node in _nodes(tree.get("statements", [])):
        if node.get("type") == "BASE_TABLE":
            named.add(str(node.get("table_name", "")))
        for entry in (node.get("cte_map") or {}).get("map") or []:
            ctes.add(str(entry.get("key", "")).lower())
    return sorted(name for name in named if name and name.lower() not in ctes)


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
