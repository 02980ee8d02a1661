"""SQL guard: admit exactly one read-only statement that can read only the datasets.

This is the second of two layers that keep the SQL endpoint read-only. The first is
DuckDB's own hardening, set once by the query engine (no external access outside
``datasets/``, configuration locked, no extension autoload). This layer decides from the
parsed statement, before anything runs:

- exactly one statement, else ``InvalidInput``;
- its type is ``SELECT`` (which includes ``WITH``, ``VALUES``, ``FROM``-first,
  ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and the ``PRAGMA``s DuckDB rewrites into a
  ``SELECT``) or ``EXPLAIN [ANALYZE]`` of such a ``SELECT``; anything else — DDL, DML,
  ``COPY``, ``ATTACH``, ``SET``, ``INSTALL``/``LOAD``, ``CALL``, setting ``PRAGMA``s,
  transactions — is ``PermissionDenied``;
- its syntax tree (DuckDB's ``json_serialize_sql``) is checked against allow-lists, not
  deny-lists: a table is one of the catalog's datasets (unqualified, or in ``main`` of
  the engine's own ``memory`` database, as Flight SQL clients qualify them) or a
  CTE the query itself defines in scope; a table function is one of
  ``ALLOWED_TABLE_FUNCTIONS`` (generators, and the engine's own function and keyword
  lists: no ``read_*``, ``glob``, ``query``,
  ``duckdb_*()``, ``pragma_*``); a function is one of DuckDB's own in ``main`` minus
  those that reveal the server (``DENIED_FUNCTIONS``, and macros that run a query); so
  ``pg_catalog.pg_settings``, ``information_schema``, ``duckdb_settings()``,
  ``current_setting()`` and ``SHOW ALL TABLES`` are refused (``PermissionDenied``, or
  ``NotFound`` for a name that is not a dataset). ``SHOW TABLES``, ``DESCRIBE``/
  ``SUMMARIZE`` of a query over datasets and ``EXPLAIN`` stay allowed.

The verdict — the statement to run, and whether it is exactly ``SELECT * FROM <dataset>``
(:attr:`Statement.scan_of`, read off the same tree, so the read path can stream the stored
objects instead) — depends on the text alone, so it is cached by a digest of the text in a
bounded LRU that this guard owns, under its one lock (taken alone: nothing is called under
it). A verdict also lists the tables the statement reads, which the engine checks against
the datasets of the moment on every call. Statements longer than 64 KiB are not kept, so
the cache holds digests and short texts only.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb

from flight_lake.database import open_database
from flight_lake.errors import InvalidInput, LakeError, PermissionDenied, TooLarge, Unavailable

# Table functions a query may call: generators over its own values, nothing of the server.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    # what the engine itself offers (Flight SQL's GetSqlInfo lists them): nothing of the server
    "duckdb_functions",
    "duckdb_keywords",
})

# DuckDB functions that reveal the server's environment, configuration or catalog.
DENIED_FUNCTIONS = frozenset({
    "getenv",
    "current_setting",
    "which_secret",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_query",
    "in_search_path",
})

# Forms the parser writes as functions that ``duckdb_functions()`` does not list.
_SPECIAL_FORMS = frozenset({"unnest", "try", "grouping", "grouping_id"})

# Scalar functions that build one value of this many elements (or characters) in a single
# step, which neither DuckDB's memory_limit nor an interrupt can stop: a size past
# MAX_BUILT_SIZE is refused as too_large (list(range(10^9)) took 12 GB). A size given as an
# expression of constants (``4000 * 1000000``) is folded by DuckDB first; one that reads
# columns cannot be known before the query runs, and the memory guard watches that.
_BUILDERS = {"range": None, "generate_series": None, "repeat": 1, "list_resize": 1,
             "array_resize": 1, "lpad": 1, "rpad": 1}
MAX_BUILT_SIZE = 10_000_000

# A table "name" with one of these is a file path or URL (a replacement scan).
_PATH_CHARACTERS = re.compile(r"[/\\:.~]")
_EXPLAIN_PREFIX = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*EXPLAIN\s+(?:ANALY[SZ]E\s+)?",
    re.IGNORECASE | re.DOTALL,
)
_SHOW_TABLES = '"tables"'  # SHOW TABLES: the views in ``main``, i.e. the datasets
_CACHE_SIZE = 1024
_CACHED_TEXT_BYTES = 64 * 1024  # a longer statement is not kept in the verdict cache



class Statement(NamedTuple):
    """One admitted statement: its text, the digest of the SQL sent, what it scans whole."""

    text: str
    digest: bytes
    scan_of: str | None  # the dataset name if the statement is exactly SELECT * FROM it
    tables: frozenset[str] = frozenset()  # the tables (not CTEs) it reads: datasets or none
    # functions it calls that DuckDB does not know (another engine may: spark_engine refuses)
    unknown_functions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Functions:
    allowed: frozenset[str]
    known: frozenset[str]  # every function DuckDB has, in any schema


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
        self._parser = open_database()
        self._functions = _function_lists(self._parser)

    def close(self) -> None:
        self._parser.close()

    def check(self, sql: str,
              watch: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Statement:
        """The statement to execute, or raise ``InvalidInput``/``PermissionDenied``.

        ``watch`` is given the connection that parses, so a deadline can interrupt it (a
        DuckDB ``InterruptException`` then escapes, and nothing is cached).
        """
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
                if watch is not None:
                    watch(connection)
                verdict = _judge(connection, sql, digest, self._functions)
            finally:
                connection.close()
            if not isinstance(verdict, Statement) or len(verdict.text) <= _CACHED_TEXT_BYTES:
                with self._lock:
                    self._cache[digest] = verdict
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        if isinstance(verdict, Statement):
            return verdict
        refusal, detail = verdict
        raise refusal(detail)


def _function_lists(connection: duckdb.DuckDBPyConnection) -> _Functions:
    """DuckDB's own pure functions (``main``, no macro that runs a query), and all names."""
    rows = connection.execute(
        "SELECT function_name, schema_name, function_type, coalesce(macro_definition, '') "
        "FROM duckdb_functions()"
    ).fetchall()
    known = {str(name).lower() for name, *_ in rows}
    allowed = {
        str(name).lower()
        for name, schema, kind, definition in rows
        if schema == "main" and kind in ("scalar", "aggregate", "macro")
        and not re.search(r"\b(select|from)\b", str(definition), re.IGNORECASE)
    }
    allowed -= DENIED_FUNCTIONS
    allowed |= ALLOWED_TABLE_FUNCTIONS | _SPECIAL_FORMS
    return _Functions(frozenset(allowed), frozenset(known | _SPECIAL_FORMS))


def _judge(connection: duckdb.DuckDBPyConnection, sql: str, digest: bytes,
           functions: _Functions) -> _Verdict:
    try:
        text, scan_of, tables, unknown = _checked_statement(connection, sql, functions)
    except (InvalidInput, PermissionDenied, TooLarge) as refusal:
        return type(refusal), refusal.detail
    return Statement(text, digest, scan_of, frozenset(tables), frozenset(unknown))


def _checked_statement(
    connection: duckdb.DuckDBPyConnection, sql: str, functions: _Functions
) -> tuple[str, str | None, set[str], set[str]]:
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
        tree, tables, unknown = _check_tree(connection, text, functions)
        scan_of = _plain_scan(tree)
    elif kind == duckdb.StatementType.EXPLAIN:
        text = statement.query
        match = _EXPLAIN_PREFIX.match(text)
        inner = _parse(connection, text[match.end():]) if match else []
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            raise PermissionDenied("only EXPLAIN [ANALYZE] of a SELECT is allowed")
        _, tables, unknown = _check_tree(connection, inner[0].query, functions)
    else:
        raise PermissionDenied(
            f"the SQL endpoint is read-only: {_kind_name(kind)} statements are refused; "
            "send one SELECT"
        )
    if not text.strip():
        raise PermissionDenied("this statement cannot be checked; send one plain SELECT")
    return text, scan_of, tables, unknown


def _parse(connection: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(connection.extract_statements(sql))
    except duckdb.InterruptException:
        raise  # the deadline: the engine reports it
    except duckdb.Error as exc:
        raise InvalidInput(str(exc)) from exc


def _check_tree(
    connection: duckdb.DuckDBPyConnection, select_sql: str, functions: _Functions
) -> tuple[dict[str, Any], set[str], set[str]]:
    """The statement's syntax tree, checked; the tables it reads that are not CTEs; and
    the functions it calls that DuckDB does not know."""
    row = connection.execute("SELECT json_serialize_sql(?)", [select_sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no result"}
    if tree.get("error"):
        raise InvalidInput(f"cannot check this query: {tree.get('error_message', 'unknown')}")
    tables: set[str] = set()
    check = _TreeCheck(functions, tables, connection)
    check.visit(tree.get("statements", []), frozenset())
    return tree, tables, check.unknown


class _TreeCheck:
    """One walk over a serialized statement, with the CTE names in scope at each node."""

    def __init__(self, functions: _Functions, tables: set[str],
                 connection: duckdb.DuckDBPyConnection) -> None:
        self.functions = functions
        self.tables = tables
        self.connection = connection
        self.generators: set[int] = set()
        self.unknown: set[str] = set()

    def visit(self, root: Any, scope: frozenset[str]) -> None:
        stack: list[tuple[Any, frozenset[str]]] = [(root, scope)]
        while stack:
            item, ctes = stack.pop()
            if isinstance(item, list):
                stack.extend((value, ctes) for value in item)
                continue
            if not isinstance(item, dict):
                continue
            entries = (item.get("cte_map") or {}).get("map") or []
            for entry in entries:  # each CTE sees those before it, and itself
                ctes = ctes | {str(entry.get("key", "")).lower()}
                stack.append((entry.get("value"), ctes))
            self._check_node(item, ctes)
            stack.extend((value, ctes) for key, value in item.items() if key != "cte_map")

    def _check_node(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        node_type = node.get("type")
        if node_type == "BASE_TABLE":
            self._check_table(node, ctes)
        elif node_type == "TABLE_FUNCTION":
            function = node.get("function") or {}
            self.generators.add(id(function))  # range() as a table streams: not a builder
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS or function.get("schema") or \
                    function.get("catalog"):
                raise PermissionDenied(
                    f"table function {name or '?'}() is not allowed: SQL may read the "
                    "catalog's datasets and nothing else"
                )
        elif node_type == "SHOW_REF" and node.get("query") is None \
                and node.get("table_name") != _SHOW_TABLES:
            raise PermissionDenied(
                "only SHOW TABLES and DESCRIBE/SUMMARIZE of a dataset are allowed"
            )
        if node.get("class") in ("FUNCTION", "WINDOW"):
            self._check_function(node)

    def _check_table(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        name = str(node.get("table_name", ""))
        catalog = str(node.get("catalog_name", ""))
        schema = str(node.get("schema_name", ""))
        if _PATH_CHARACTERS.search(name):
            raise PermissionDenied(
                f"reading files or URLs from SQL is not allowed ({name!r}); "
                "query a dataset by its name"
            )
        # "memory" is the engine's own database: its "main" holds the datasets' views only
        if catalog.lower() not in ("", "memory") or schema.lower() not in ("", "main"):
            qualified = ".".join(part for part in (catalog, schema, name) if part)
            raise PermissionDenied(
                f"{qualified} is not a dataset: SQL may read the catalog's datasets "
                "and nothing else"
            )
        if catalog or schema or name.lower() not in ctes:
            self.tables.add(name.lower())

    def _check_function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        schema = str(node.get("schema", "")).lower()
        catalog = str(node.get("catalog", "")).lower()
        if catalog or schema not in ("", "main"):
            raise PermissionDenied(f"function {schema}.{name}() is not allowed")
        if name in _BUILDERS and id(node) not in self.generators:
            _check_built_size(name, node.get("children") or [], self.connection)
        if name not in self.functions.known:
            self.unknown.add(name)
        if name in DENIED_FUNCTIONS or (
                name in self.functions.known and name not in self.functions.allowed):
            raise PermissionDenied(
                f"function {name}() is not allowed: SQL may call pure functions only"
            )


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
    parser = open_database()
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


def _check_built_size(name: str, arguments: list[Any],
                      connection: duckdb.DuckDBPyConnection) -> None:
    position = _BUILDERS[name]
    sized = arguments if position is None else arguments[position:position + 1]
    for argument in sized:
        if not isinstance(argument, dict):
            continue
        if argument.get("class") == "CONSTANT":
            value = (argument.get("value") or {}).get("value")
        else:
            value = _folded(connection, argument)
        if isinstance(value, int | float) and abs(value) > MAX_BUILT_SIZE:
            raise TooLarge(
                f"{name}() with {value} would build one value of that size in a single "
                f"step, which the memory budget cannot stop; at most {MAX_BUILT_SIZE:,} "
                "(range() in FROM streams any size)")


# What a size expression may contain to be folded before the query runs: constants and
# pure functions of them (no columns, subqueries, parameters or builders of its own).
_UNFOLDABLE = frozenset({"COLUMN_REF", "SUBQUERY", "PARAMETER", "STAR", "WINDOW", "LAMBDA",
                         "LAMBDA_REF", "POSITIONAL_REFERENCE"})


def _folded(connection: duckdb.DuckDBPyConnection, expression: dict[str, Any]) -> Any:
    """The value of a constant expression, computed by DuckDB; None if it reads anything
    but constants or cannot be computed."""
    for node in _nodes(expression):
        if node.get("class") in _UNFOLDABLE or (
                node.get("class") == "FUNCTION"
                and str(node.get("function_name", "")).lower() in _BUILDERS):
            return None
    try:
        # DuckDB's own tree of ``SELECT NULL``, its one expression swapped for ``expression``
        row = connection.execute("SELECT json_serialize_sql('SELECT NULL')").fetchone()
        statement = json.loads(row[0]) if row else {}
        statement["statements"][0]["node"]["select_list"] = [expression]
        row = connection.execute("SELECT json_deserialize_sql(?)",
                                 [json.dumps(statement)]).fetchone()
        value = connection.execute(str(row[0])).fetchone() if row else None
    except duckdb.InterruptException:
        raise  # the deadline: the engine reports it
    except (duckdb.Error, KeyError, IndexError, TypeError):  # not computable here
        return None
    return value[0] if value else None


def _kind_name(kind: Any) -> str:
    name = getattr(kind, "name", None)
    return str(name) if name and name != "???" else "non-SELECT"
