"""CommandGetSqlInfo: what the server and its SQL engine are, as the specification's union table.

The answer has one row per requested ``SqlInfo`` id: ``info_name: uint32 not null`` and
``value``, a dense union of string, bool, int64, int32 bitmask, string list and
int32→int32-list map. Keywords and function names come from DuckDB itself
(``duckdb_keywords()``, ``duckdb_functions()``), read once through the lake's read path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import pyarrow as pa

from flight_lake import SERVICE_NAME, __version__

_STRING, _BOOL, _BIGINT, _BITMASK, _STRING_LIST, _INT_MAP = range(6)

VALUE_TYPE = pa.dense_union([
    pa.field("string_value", pa.utf8(), nullable=False),
    pa.field("bool_value", pa.bool_(), nullable=False),
    pa.field("bigint_value", pa.int64(), nullable=False),
    pa.field("int32_bitmask", pa.int32(), nullable=False),
    pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())),
             nullable=False),
])
SCHEMA = pa.schema([
    pa.field("info_name", pa.uint32(), nullable=False),
    pa.field("value", VALUE_TYPE, nullable=False),
])

# SqlInfo ids of the specification (the enum SqlInfo) that this server answers.
SERVER_NAME, SERVER_VERSION, SERVER_ARROW_VERSION, SERVER_READ_ONLY = 0, 1, 2, 3
SERVER_SQL, SERVER_SUBSTRAIT, SERVER_TRANSACTION, SERVER_CANCEL = 4, 5, 8, 9
SERVER_STATEMENT_TIMEOUT, SERVER_TRANSACTION_TIMEOUT = 100, 101
DDL_CATALOG, DDL_SCHEMA, DDL_TABLE = 500, 501, 502
IDENTIFIER_CASE, IDENTIFIER_QUOTE_CHAR, QUOTED_IDENTIFIER_CASE = 503, 504, 505
ALL_TABLES_ARE_SELECTABLE, NULL_ORDERING, KEYWORDS = 506, 507, 508
NUMERIC_FUNCTIONS, STRING_FUNCTIONS, SYSTEM_FUNCTIONS, DATETIME_FUNCTIONS = 509, 510, 511, 512
SEARCH_STRING_ESCAPE, EXTRA_NAME_CHARACTERS, SUPPORTS_COLUMN_ALIASING = 513, 514, 515
NULL_PLUS_NULL_IS_NULL, SUPPORTS_EXPRESSIONS_IN_ORDER_BY = 516, 520
SUPPORTS_NON_NULLABLE_COLUMNS, SCHEMA_TERM, PROCEDURE_TERM, CATALOG_TERM = 524, 529, 530, 531
CATALOG_AT_START, SELECT_FOR_UPDATE_SUPPORTED, STORED_PROCEDURES_SUPPORTED = 532, 536, 537
CORRELATED_SUBQUERIES_SUPPORTED, SUPPORTED_UNIONS = 539, 540
DEFAULT_TRANSACTION_ISOLATION, TRANSACTIONS_SUPPORTED = 562, 563

_CASE_INSENSITIVE = 1  # SqlSupportedCaseSensitivity
_NULLS_SORTED_AT_END = 3  # SqlNullOrdering: DuckDB sorts NULLs last by default
_TRANSACTION_NONE = 0  # SqlSupportedTransaction / SqlTransactionIsolationLevel
_UNION_AND_UNION_ALL = 0b11  # SqlSupportedUnions bitmask

# The function lists, as DuckDB categorises its scalar functions.
_FUNCTIONS_SQL = (
    "SELECT DISTINCT function_name FROM duckdb_functions() "
    "WHERE function_type = 'scalar' AND list_has_any(categories, {categories}) "
    "AND NOT starts_with(function_name, '__') ORDER BY 1"
)
_KEYWORDS_SQL = "SELECT DISTINCT keyword_name FROM duckdb_keywords() ORDER BY 1"
_SYSTEM_FUNCTIONS = ("current_catalog", "current_database", "current_schema",
                     "current_schemas", "version")

Query = Callable[[str], list[str]]  # runs a one-column query, returns its values


class SqlInfo:
    """The SqlInfo table; engine lists are read once, on the first request that needs them."""

    def __init__(self, query: Query, arrow_version: str = pa.__version__) -> None:
        self._query = query
        self._arrow_version = arrow_version
        self._engine_lists: dict[int, list[str]] | None = None
        self._lock = threading.Lock()

    def table(self, requested: Iterable[int]) -> pa.Table:
        """Rows for ``requested`` ids in that order (every id this server knows if empty)."""
        values = self._values()
        ids = list(requested) or sorted(values)
        known = [info for info in ids if info in values]
        return pa.Table.from_arrays(
            [pa.array(known, pa.uint32()), _union([values[info] for info in known])],
            schema=SCHEMA)

    def _values(self) -> dict[int, object]:
        values: dict[int, object] = {
            SERVER_NAME: SERVICE_NAME,
            SERVER_VERSION: __version__,
            SERVER_ARROW_VERSION: self._arrow_version,
            SERVER_READ_ONLY: True,  # SQL never writes; data arrives through ingest only
            SERVER_SQL: True,
            SERVER_SUBSTRAIT: False,
            SERVER_TRANSACTION: (_BITMASK, _TRANSACTION_NONE),
            SERVER_CANCEL: True,
            SERVER_STATEMENT_TIMEOUT: (_BITMASK, 0),
            SERVER_TRANSACTION_TIMEOUT: (_BITMASK, 0),
            DDL_CATALOG: False,
            DDL_SCHEMA: False,
            DDL_TABLE: False,
            IDENTIFIER_CASE: (_BITMASK, _CASE_INSENSITIVE),
            IDENTIFIER_QUOTE_CHAR: '"',
            QUOTED_IDENTIFIER_CASE: (_BITMASK, _CASE_INSENSITIVE),
            ALL_TABLES_ARE_SELECTABLE: True,
            NULL_ORDERING: (_BITMASK, _NULLS_SORTED_AT_END),
            SEARCH_STRING_ESCAPE: "\\",
            EXTRA_NAME_CHARACTERS: "",
            SUPPORTS_COLUMN_ALIASING: True,
            NULL_PLUS_NULL_IS_NULL: True,
            SUPPORTS_EXPRESSIONS_IN_ORDER_BY: True,
            SUPPORTS_NON_NULLABLE_COLUMNS: False,
            SCHEMA_TERM: "schema",
            PROCEDURE_TERM: "procedure",
            CATALOG_TERM: "catalog",
            CATALOG_AT_START: True,
            SELECT_FOR_UPDATE_SUPPORTED: False,
            STORED_PROCEDURES_SUPPORTED: False,
            CORRELATED_SUBQUERIES_SUPPORTED: True,
            SUPPORTED_UNIONS: (_BITMASK, _UNION_AND_UNION_ALL),
            DEFAULT_TRANSACTION_ISOLATION: (_BITMASK, _TRANSACTION_NONE),
            TRANSACTIONS_SUPPORTED: False,
        }
        values.update(self._lists())
        return values

    def _lists(self) -> dict[int, list[str]]:
        with self._lock:
            if self._engine_lists is None:
                functions = self._query(_FUNCTIONS_SQL.format(categories="['numeric']"))
                self._engine_lists = {
                    KEYWORDS: self._query(_KEYWORDS_SQL),
                    NUMERIC_FUNCTIONS: functions,
                    STRING_FUNCTIONS: self._query(_FUNCTIONS_SQL.format(
                        categories="['string']")),
                    DATETIME_FUNCTIONS: self._query(_FUNCTIONS_SQL.format(
                        categories="['date', 'timestamp', 'time', 'interval']")),
                    SYSTEM_FUNCTIONS: list(_SYSTEM_FUNCTIONS),
                }
            return self._engine_lists


def _union(values: list[object]) -> pa.Array:
    """Values as the dense union: str, bool, list[str] by type; ints tagged (code, value)."""
    children: list[list[object]] = [[] for _ in range(6)]
    type_ids: list[int] = []
    offsets: list[int] = []
    for value in values:
        if isinstance(value, tuple):
            code, item = value
        elif isinstance(value, bool):
            code, item = _BOOL, value
        elif isinstance(value, str):
            code, item = _STRING, value
        elif isinstance(value, list):
            code, item = _STRING_LIST, value
        else:
            raise TypeError(f"no SqlInfo union member for {value!r}")
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(item)
    arrays = [pa.array(items, type=VALUE_TYPE.field(code).type)
              for code, items in enumerate(children)]
    # from_buffers keeps the members' non-null flags, which from_dense would drop
    return pa.Array.from_buffers(
        VALUE_TYPE, len(values),
        [None, pa.array(type_ids, pa.int8()).buffers()[1],
         pa.array(offsets, pa.int32()).buffers()[1]],
        children=arrays)
