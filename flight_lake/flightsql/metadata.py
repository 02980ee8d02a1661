"""The catalog tree as Flight SQL sees it: catalogs, schemas, tables, types and keys.

Every dataset is a table ``memory.main.<name>`` — DuckDB's own catalog and schema names,
so a name a SQL tool qualifies fully still resolves. Result schemas are the
specification's, nullability included (clients check them). The lake has no keys, so the
key commands answer empty tables of the right shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pyarrow as pa

from flight_lake.flightsql import flight_sql_pb2 as sql_pb2

CATALOG = "memory"
DB_SCHEMA = "main"
TABLE_TYPE = "TABLE"


def _utf8(name: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, pa.utf8(), nullable=nullable)


CATALOGS_SCHEMA = pa.schema([_utf8("catalog_name", False)])
DB_SCHEMAS_SCHEMA = pa.schema([_utf8("catalog_name"), _utf8("db_schema_name", False)])
TABLES_SCHEMA = pa.schema([
    _utf8("catalog_name"), _utf8("db_schema_name"), _utf8("table_name", False),
    _utf8("table_type", False),
])
TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(
    pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([_utf8("table_type", False)])
PRIMARY_KEYS_SCHEMA = pa.schema([
    _utf8("catalog_name"), _utf8("db_schema_name"), _utf8("table_name", False),
    _utf8("column_name", False), _utf8("key_name"),
    pa.field("key_sequence", pa.int32(), nullable=False),
])
FOREIGN_KEYS_SCHEMA = pa.schema([
    _utf8("pk_catalog_name"), _utf8("pk_db_schema_name"), _utf8("pk_table_name", False),
    _utf8("pk_column_name", False), _utf8("fk_catalog_name"), _utf8("fk_db_schema_name"),
    _utf8("fk_table_name", False), _utf8("fk_column_name", False),
    pa.field("key_sequence", pa.int32(), nullable=False), _utf8("fk_key_name"),
    _utf8("pk_key_name"), pa.field("update_rule", pa.uint8(), nullable=False),
    pa.field("delete_rule", pa.uint8(), nullable=False),
])
XDBC_TYPE_INFO_SCHEMA = pa.schema([
    _utf8("type_name", False), pa.field("data_type", pa.int32(), nullable=False),
    pa.field("column_size", pa.int32()), _utf8("literal_prefix"), _utf8("literal_suffix"),
    pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
    pa.field("nullable", pa.int32(), nullable=False),
    pa.field("case_sensitive", pa.bool_(), nullable=False),
    pa.field("searchable", pa.int32(), nullable=False), pa.field("unsigned_attribute", pa.bool_()),
    pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
    pa.field("auto_increment", pa.bool_()), _utf8("local_type_name"),
    pa.field("minimum_scale", pa.int32()), pa.field("maximum_scale", pa.int32()),
    pa.field("sql_data_type", pa.int32(), nullable=False),
    pa.field("datetime_subcode", pa.int32()), pa.field("num_prec_radix", pa.int32()),
    pa.field("interval_precision", pa.int32()),
])

# DuckDB's types as XDBC rows: (name, data_type, column_size, prefix, suffix, create_params,
# case_sensitive, unsigned, fixed_prec_scale, min/max scale, sql_data_type, subcode, radix).
_NULLABLE, _SEARCHABLE_FULL = 1, 3
_XDBC_TYPES: list[tuple] = [
    ("BIGINT", -5, 19, None, None, None, False, False, False, None, None, -5, None, 10),
    ("TINYINT", -6, 3, None, None, None, False, False, False, None, None, -6, None, 10),
    ("BOOLEAN", -7, 1, None, None, None, False, None, False, None, None, -7, None, None),
    ("BLOB", -3, None, "'", "'::BLOB", None, False, None, False, None, None, -3, None, None),
    ("DECIMAL", 3, 38, None, None, ["precision", "scale"], False, False, True, 0, 38, 3,
     None, 10),
    ("INTEGER", 4, 10, None, None, None, False, False, False, None, None, 4, None, 10),
    ("SMALLINT", 5, 5, None, None, None, False, False, False, None, None, 5, None, 10),
    ("FLOAT", 7, 24, None, None, None, False, False, False, None, None, 7, None, 2),
    ("DOUBLE", 8, 53, None, None, None, False, False, False, None, None, 8, None, 2),
    ("VARCHAR", 12, None, "'", "'", None, True, None, False, None, None, 12, None, None),
    ("DATE", 91, 10, "DATE '", "'", None, False, None, False, None, None, 9, 1, None),
    ("TIME", 92, 15, "TIME '", "'", None, False, None, False, None, None, 9, 2, None),
    ("TIMESTAMP", 93, 26, "TIMESTAMP '", "'", None, False, None, False, None, None, 9, 3,
     None),
    ("TIMESTAMP WITH TIME ZONE", 93, 32, "TIMESTAMPTZ '", "'", None, False, None, False,
     None, None, 9, 5, None),
]

Describe = Callable[[str], pa.Schema]  # the result schema of a table, by dataset name


def catalogs() -> pa.Table:
    return pa.Table.from_pylist([{"catalog_name": CATALOG}], schema=CATALOGS_SCHEMA)


def db_schemas(command: sql_pb2.CommandGetDbSchemas) -> pa.Table:
    rows = []
    if _catalog_matches(command, "catalog") and _like(
            _optional(command, "db_schema_filter_pattern"), DB_SCHEMA):
        rows.append({"catalog_name": CATALOG, "db_schema_name": DB_SCHEMA})
    return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)


def tables(command: sql_pb2.CommandGetTables, names: Iterable[str],
           describe: Describe) -> pa.Table:
    """The datasets matching the command's filters, with their schemas if asked."""
    schema = TABLES_WITH_SCHEMA_SCHEMA if command.include_schema else TABLES_SCHEMA
    wanted_types = {kind.upper() for kind in command.table_types}
    if (not _catalog_matches(command, "catalog")
            or not _like(_optional(command, "db_schema_filter_pattern"), DB_SCHEMA)
            or (wanted_types and TABLE_TYPE not in wanted_types)):
        return schema.empty_table()
    pattern = _optional(command, "table_name_filter_pattern")
    rows = []
    for name in sorted(names):
        if not _like(pattern, name):
            continue
        row: dict[str, object] = {"catalog_name": CATALOG, "db_schema_name": DB_SCHEMA,
                                  "table_name": name, "table_type": TABLE_TYPE}
        if command.include_schema:
            row["table_schema"] = describe(name).serialize().to_pybytes()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def table_types() -> pa.Table:
    return pa.Table.from_pylist([{"table_type": TABLE_TYPE}], schema=TABLE_TYPES_SCHEMA)


def xdbc_type_info(command: sql_pb2.CommandGetXdbcTypeInfo) -> pa.Table:
    wanted = command.data_type if command.HasField("data_type") else None
    rows = [
        {"type_name": name, "data_type": data_type, "column_size": size,
         "literal_prefix": prefix, "literal_suffix": suffix, "create_params": params,
         "nullable": _NULLABLE, "case_sensitive": case_sensitive,
         "searchable": _SEARCHABLE_FULL, "unsigned_attribute": unsigned,
         "fixed_prec_scale": fixed, "auto_increment": False if unsigned is not None else None,
         "local_type_name": name, "minimum_scale": min_scale, "maximum_scale": max_scale,
         "sql_data_type": sql_type, "datetime_subcode": subcode, "num_prec_radix": radix,
         "interval_precision": None}
        for (name, data_type, size, prefix, suffix, params, case_sensitive, unsigned, fixed,
             min_scale, max_scale, sql_type, subcode, radix) in _XDBC_TYPES
        if wanted is None or data_type == wanted
    ]
    rows.sort(key=lambda row: (row["data_type"], row["type_name"]))
    return pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)


def primary_keys() -> pa.Table:
    return PRIMARY_KEYS_SCHEMA.empty_table()


def foreign_keys() -> pa.Table:
    """Exported keys, imported keys and cross references: the lake has none."""
    return FOREIGN_KEYS_SCHEMA.empty_table()


def _optional(command: object, field: str) -> str | None:
    return getattr(command, field) if command.HasField(field) else None  # type: ignore[attr-defined]


def _catalog_matches(command: object, field: str) -> bool:
    catalog = _optional(command, field)
    return catalog is None or catalog == CATALOG


def _like(pattern: str | None, value: str) -> bool:
    """SQL LIKE as the specification uses it: ``%`` any run, ``_`` one character."""
    if pattern is None:
        return True
    regex = []
    escaped = False
    for char in pattern:
        if escaped:
            regex.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        else:
            regex.append(re.escape(char))
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None
