"""One JSON encoding of query results (clients/flight_lake_client/json_rows.py): the HTTP adapter's
answer and ``flight-lake sql --format json`` are the same bytes, always valid JSON."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import subprocess
import sys

import httpx
import pyarrow as pa
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from flight_lake.cli import app
from flight_lake.serve import Server
from flight_lake_client import connect
from flight_lake_client.json_rows import JsonRows
from tests.support import REPO

EVERY_TYPE = pa.table({
    "i8": pa.array([1, None, -3], pa.int8()),
    "u64": pa.array([2**63, 0, None], pa.uint64()),
    "f32": pa.array([1.5, float("nan"), float("inf")], pa.float32()),
    "f64": pa.array([float("-inf"), 2.0, None], pa.float64()),
    "flag": pa.array([True, None, False]),
    "text": pa.array(['a"b\n\t\\', None, "é\x01"]),
    "blob": pa.array([b"\x01\x02", None, b""], pa.binary()),
    "fixed": pa.array([b"ab", b"cd", None], pa.binary(2)),
    "day": pa.array([datetime.date(2024, 1, 2), None, datetime.date(1970, 1, 1)]),
    "at": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 6), None,
                    datetime.datetime(1999, 12, 31)], pa.timestamp("us")),
    "at_utc": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), None,
                        None], pa.timestamp("ms", tz="UTC")),
    "clock": pa.array([datetime.time(1, 2, 3, 4), None, datetime.time(0)], pa.time64("us")),
    "price": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")],
                      pa.decimal128(5, 2)),
    "huge": pa.array([decimal.Decimal("12345678901234567890"), None, decimal.Decimal(0)],
                     pa.decimal128(38, 0)),
    "took": pa.array([datetime.timedelta(seconds=90), None, datetime.timedelta(microseconds=1)],
                     pa.duration("us")),
    "scores": pa.array([[1.0, float("nan")], None, []], pa.list_(pa.float64())),
    "pair": pa.array([{"x": 1, "y": "a"}, None, {"x": None, "y": None}],
                     pa.struct([("x", pa.int64()), ("y", pa.string())])),
    "tags": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
    "kind": pa.array(["x", "y", None]).dictionary_encode(),
})
QUERIES = [
    "SELECT * FROM every_type",  # the stored objects as they are, no DuckDB
    "SELECT *, INTERVAL 90 SECOND AS iv, 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, "
    "1.5::DECIMAL(4, 1) AS d, '\\x01\\x02'::BLOB AS b, sum(i8) OVER () AS total, "
    "[1.0, 'nan'::DOUBLE] AS l, {'a': '-inf'::DOUBLE, 'at': TIMESTAMP '2024-01-02'} AS s "
    "FROM every_type ORDER BY i8 NULLS LAST",
]


@pytest.mark.parametrize("query", QUERIES)
def test_cli_and_http_write_the_same_valid_json(server: Server, query: str) -> None:
    with connect(server.flight_uri) as lake:
        if not lake.datasets():
            lake.ingest(EVERY_TYPE, name="every_type")
    from_http = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": query}, timeout=60)
    assert from_http.status_code == 200, from_http.text
    with capture_logs():  # the in-process server logs to stdout, which CliRunner captures
        from_cli = CliRunner(env={"FLIGHT_LAKE_SERVER": server.flight_uri}).invoke(
            app, ["sql", query, "--format", "json"])
    assert from_cli.exit_code == 0, from_cli.stderr
    assert from_cli.stdout_bytes == from_http.content
    rows = json.loads(from_cli.stdout_bytes)  # strict: NaN or Infinity would fail here too
    assert len(rows) == 3 and set(rows[0]) >= set(EVERY_TYPE.column_names)
    assert all(not isinstance(v, float) or math.isfinite(v) for row in rows for v in row.values())
    first = next(row for row in rows if row["i8"] == 1)
    assert first["blob"] == "AQI=" and first["price"] == 1.5 and first["f32"] == 1.5
    assert first["huge"] == 12345678901234567890


def test_bytes_do_not_depend_on_batch_boundaries() -> None:
    rows_at_once, rows_in_pieces = JsonRows(), JsonRows(lines=False)
    whole = rows_at_once.begin() + b"".join(
        rows_at_once.batch(b) for b in EVERY_TYPE.to_batches()) + rows_at_once.end()
    pieces = rows_in_pieces.begin() + b"".join(
        rows_in_pieces.batch(b) for b in EVERY_TYPE.to_batches(max_chunksize=1)
    ) + rows_in_pieces.end()
    assert whole == pieces
    first = json.loads(whole)[0]
    assert (first["took"], first["blob"], first["price"], first["f32"]) == (90.0, "AQI=", 1.5, 1.5)
    assert first["scores"] == [1.0, None] and first["at_utc"] == "2024-01-02T03:04:05.000Z"
    lines = JsonRows(lines=True)
    as_lines = lines.begin() + lines.batch(EVERY_TYPE.to_batches()[0]) + lines.end()
    assert [json.loads(line) for line in as_lines.splitlines()] == json.loads(whole)


def test_the_cli_writes_json_without_importing_the_server() -> None:
    script = ("import sys, flight_lake_client.json_rows; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flight_lake'))")
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                            text=True, env={"PYTHONPATH": str(REPO / "clients"),
                                            "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"
