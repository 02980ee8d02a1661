"""The Flight SQL protocol classes: generated, committed, and recognised on the wire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from flight_lake.errors import InvalidInput
from flight_lake.flightsql import codegen
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2
from flight_lake.flightsql.statements import literal, placeholders, render
from flight_lake.flightsql.wire import pack, unpack


def test_regenerating_the_modules_changes_nothing(tmp_path: Path) -> None:
    for generated in codegen.generate(tmp_path):
        committed = codegen.ROOT / generated.relative_to(tmp_path)
        assert generated.read_bytes() == committed.read_bytes(), (
            f"{committed.name} is stale: run python -m flight_lake.flightsql.codegen")


def test_wire_contract_of_key_messages() -> None:
    """Field numbers are the contract: check a few against hand-encoded bytes."""
    assert sql_pb2.CommandStatementQuery(query="q").SerializeToString() == b"\n\x01q"
    assert sql_pb2.CommandGetTables(include_schema=True).SerializeToString() == b"(\x01"
    ingest = sql_pb2.CommandStatementIngest(table="t", temporary=True)
    ingest.options["k"] = "v"
    assert ingest.SerializeToString() == b"\x12\x01t(\x01\xc2>\x06\n\x01k\x12\x01v"
    assert sql_pb2.DoPutUpdateResult(record_count=3).SerializeToString() == b"\x08\x03"


def test_json_commands_are_not_flight_sql() -> None:
    assert unpack(json.dumps({"sql": "SELECT 1"}).encode()) is None
    assert unpack(b"") is None
    other = any_pb2.Any(type_url="type.googleapis.com/other.Message", value=b"")
    assert unpack(other.SerializeToString()) is None


def test_flight_sql_messages_round_trip_and_unknown_ones_are_refused() -> None:
    message = sql_pb2.CommandStatementQuery(query="SELECT 1")
    assert unpack(pack(message)) == message
    unknown = any_pb2.Any(type_url="type.googleapis.com/arrow.flight.protocol.sql.Nope")
    with pytest.raises(InvalidInput, match="unsupported Flight SQL message"):
        unpack(unknown.SerializeToString())


def test_parameters_are_found_by_the_tokenizer_and_bound_as_literals() -> None:
    sql = "SELECT '?' AS q, \"?\" FROM t WHERE a = ? AND b > ? -- ?"
    offsets = placeholders(sql)
    assert len(offsets) == 2
    bound = render(sql, offsets, ["it's", 3])
    assert bound == "SELECT '?' AS q, \"?\" FROM t WHERE a = 'it''s' AND b > 3 -- ?"
    assert literal(b"\x00\xff") == "'\\x00\\xff'::BLOB"
    with pytest.raises(InvalidInput, match="cannot bind"):
        literal([1, 2])
