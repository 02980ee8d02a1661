"""Layouts side by side: the same workers rows flat, sorted and partitioned (issue 14).

One ``flight-lake serve`` on a local folder, with the query cache off (``cache.max_bytes =
0``) so every query reads the Parquet objects, ingests the workers CSV three times over
DoPut: ``flat`` (upload order), ``sorted`` (``sort_by email``) and ``partitioned``
(``partition_by state``, ``sort_by email``). Two queries run on each, in rotated order,
timed at the client: a point lookup on ``email`` and a GROUP BY filtered on ``state``.

What each query reads is counted from the objects themselves: an object is read when its
folder matches the filter (Hive partitions) and one of its row groups' Parquet statistics
admits the value — what DuckDB's pruning skips otherwise is only the footer. DuckDB's own
count of the files it opened (``Total Files Read`` in ``EXPLAIN ANALYZE`` over the same
view) is shown beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.flight as flight
import pyarrow.parquet as pq

from benchmarks import harness
from benchmarks.harness import LakeServer, check
from benchmarks.lake_clients import flight_sql
from flight_lake.catalog import Catalog, Manifest
from flight_lake.layout import Layout
from flight_lake.query import QueryEngine
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from flight_lake_client.protocol import CHUNK_SCHEMA

LAYOUTS: dict[str, Layout] = {
    "flat": Layout(),
    "sorted": Layout(sort_by=["email"]),
    "partitioned": Layout(partition_by=["state"], sort_by=["email"]),
}
GROUP_STATE = "IL"
QUERY_LABELS = {"point": "point lookup", "group": "filtered GROUP BY"}


@dataclass
class Figures:
    """One layout's figures."""

    ingest_seconds: float
    objects: int
    row_groups: int
    seconds: dict[str, list[float]] = field(default_factory=dict)  # query -> samples
    objects_read: dict[str, int] = field(default_factory=dict)
    row_groups_read: dict[str, int] = field(default_factory=dict)
    files_opened: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    rows: int
    rows_per_part: int
    row_group_rows: int
    sql: dict[str, str]
    layouts: dict[str, Figures]


def run(rows: int, work: Path, repeats: int) -> Result:
    """Ingest ``rows`` workers in each layout and time both queries ``repeats`` times."""
    csv_path = harness.fixture(rows)
    csv_bytes = harness.fixture_meta(csv_path)["bytes"]
    rows_per_part, row_group_rows = max(1, rows // 5), max(1, min(131_072, rows // 40))
    lake = work / "lake_layouts"
    server = LakeServer({
        "FLIGHT_LAKE_STORAGE__URI": str(lake),
        "FLIGHT_LAKE_CACHE__MAX_BYTES": "0",
        "FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES": str(2 * csv_bytes + 1024),
        "FLIGHT_LAKE_INGEST__ROWS_PER_PART": str(rows_per_part),
        "FLIGHT_LAKE_INGEST__ROW_GROUP_ROWS": str(row_group_rows),
    }, work / "layouts")
    try:
        server.start()
        client = flight.connect(server.flight_url)
        manifests: dict[str, Manifest] = {}
        figures: dict[str, Figures] = {}
        for name, layout in LAYOUTS.items():
            started = time.perf_counter()
            answer = _put(client, f"workers_{name}", csv_path, layout)
            seconds = time.perf_counter() - started
            check(answer["row_count"] == rows, f"{name}: {answer['row_count']} rows")
            figures[name] = Figures(seconds, len(answer["objects"]), 0)
        catalog = Catalog(Storage.from_settings(StorageSettings(uri=str(lake))))
        for name, figure in figures.items():  # the manifests with their schemas, as stored
            manifests[name] = catalog.get(f"workers_{name}")
            figure.row_groups = sum(_row_groups(lake, manifests[name]))
        email = str(flight_sql(client, "SELECT email FROM workers_flat WHERE id = "
                                       f"{max(1, rows * 3 // 4 + 7)}").column(0)[0])
        sql = {
            "point": "SELECT * FROM {table} WHERE email = '" + email + "'",
            "group": ("SELECT role, count(*) AS workers, avg(hourly_rate) AS avg_rate "
                      "FROM {table} WHERE state = '" + GROUP_STATE + "' GROUP BY role "
                      "ORDER BY role"),
        }
        answers: dict[str, set[str]] = {}
        for round_index in range(repeats + 1):  # round 0 warms the footers' cache
            names = list(LAYOUTS)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                for query, text in sql.items():
                    started = time.perf_counter()
                    table = flight_sql(client, text.format(table=f"workers_{name}"))
                    elapsed = time.perf_counter() - started
                    answers.setdefault(query, set()).add(_canonical(table.to_pylist()))
                    if round_index:
                        figures[name].seconds.setdefault(query, []).append(elapsed)
        for query, seen in answers.items():
            check(len(seen) == 1, f"the layouts answer {query} differently")
        client.close()
        filters = {"point": ("email", email), "group": ("state", GROUP_STATE)}
        for name, manifest in manifests.items():
            for query, (column, value) in filters.items():
                objects, groups = _admitted(lake, manifest, column, value)
                figures[name].objects_read[query] = objects
                figures[name].row_groups_read[query] = groups
                figures[name].files_opened[query] = _files_opened(
                    lake, manifest, sql[query].format(table=manifest.name))
    finally:
        server.stop()
    return Result(rows, rows_per_part, row_group_rows, sql, figures)


def _canonical(rows: list[dict[str, Any]]) -> str:
    """An answer compared across layouts (sums of floats differ in their last digits)."""
    return json.dumps([{key: round(value, 6) if isinstance(value, float) else value
                        for key, value in row.items()} for row in rows], default=str)


def _put(client: flight.FlightClient, name: str, path: Path, layout: Layout) -> dict[str, Any]:
    """DoPut of the CSV with the layout in the command, as any Flight client can send it."""
    import pyarrow as pa

    command = {"op": "ingest", "name": name, "format": "csv", "mode": "create",
               **layout.model_dump()}
    writer, reader = client.do_put(
        flight.FlightDescriptor.for_command(json.dumps(command).encode()), CHUNK_SCHEMA)
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            writer.write_batch(pa.record_batch([pa.array([chunk], pa.binary())],
                                               schema=CHUNK_SCHEMA))
    writer.done_writing()
    metadata = reader.read()
    writer.close()
    check(metadata is not None, f"DoPut of {name} returned no manifest")
    return dict(json.loads(metadata.to_pybytes()))


def _row_groups(lake: Path, manifest: Manifest) -> list[int]:
    return [pq.ParquetFile(lake / o.key).metadata.num_row_groups for o in manifest.objects]


def _admitted(lake: Path, manifest: Manifest, column: str, value: str) -> tuple[int, int]:
    """Objects and row groups a filter ``column = value`` must read: those in a matching
    partition folder whose row-group statistics admit ``value``."""
    objects = groups = 0
    for data_object in manifest.objects:
        folders = dict(part.split("=", 1) for part in data_object.key.split("/") if "=" in part)
        if column in folders and folders[column] != value:
            continue  # Hive pruning: DuckDB never opens this folder's objects
        metadata = pq.ParquetFile(lake / data_object.key).metadata
        index = metadata.schema.to_arrow_schema().get_field_index(column)
        admitted = 0
        for group in range(metadata.num_row_groups):
            statistics = metadata.row_group(group).column(index).statistics
            if statistics is None or not statistics.has_min_max or \
                    statistics.min <= value <= statistics.max:
                admitted += 1
        objects += bool(admitted)
        groups += admitted
    return objects, groups


def _files_opened(lake: Path, manifest: Manifest, sql: str) -> int:
    """DuckDB's ``Total Files Read`` for ``sql`` over the dataset's view, as the server
    makes it (``EXPLAIN ANALYZE``, JSON profile)."""
    database = duckdb.connect(":memory:")
    try:
        urls = [str(lake / o.key) for o in manifest.objects]
        database.execute(QueryEngine._view_sql(manifest, urls))
        database.execute("PRAGMA enable_profiling = 'json'")
        profile = json.loads(database.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1])
    finally:
        database.close()
    opened = 0
    stack = [profile]
    while stack:
        node = stack.pop()
        opened += int(node.get("extra_info", {}).get("Total Files Read", 0) or 0)
        stack.extend(node.get("children", []))
    return opened


# -- the report --------------------------------------------------------------------------


def _ms(samples: list[float]) -> str:
    return f"{harness.median(samples) * 1000:.1f}"


def section(result: Result | None) -> list[str]:
    if result is None:
        return []
    flat = result.layouts["flat"]
    lines = [
        f"## 11. Layouts: flat, sorted, partitioned ({result.rows:,} rows)",
        "",
        "The same CSV ingested three times over DoPut into one server with the query cache "
        "off (every query reads Parquet): `flat` (upload order), `sorted` (`sort_by email`), "
        "`partitioned` (`partition_by state`, `sort_by email`); "
        f"`ingest.rows_per_part = {result.rows_per_part:,}`, "
        f"`ingest.row_group_rows = {result.row_group_rows:,}`. Query times are medians at "
        "the client (Flight DoGet `{sql}` ticket), layouts in rotated order. *Objects read* "
        "and *row groups read*: those in a matching partition folder whose Parquet "
        "statistics admit the value (the rest DuckDB skips after the footer, or never "
        "opens); *files opened*: DuckDB's `Total Files Read` in `EXPLAIN ANALYZE` over the "
        "same view.",
        "",
        "| layout | ingest (s) | objects | row groups |",
        "|---|---|---|---|",
        *[f"| {name} | {figures.ingest_seconds:.1f} | {figures.objects} | "
          f"{figures.row_groups} |" for name, figures in result.layouts.items()],
        "",
    ]
    for query, label in QUERY_LABELS.items():
        lines += [
            f"### {label}: `{result.sql[query].format(table='workers_<layout>')}`",
            "",
            "| layout | ms (p50) | time vs flat | objects read | row groups read | files opened |",
            "|---|---|---|---|---|---|",
        ]
        for name, figures in result.layouts.items():
            ratio = harness.median(figures.seconds[query]) / harness.median(flat.seconds[query])
            lines.append(
                f"| {name} | {_ms(figures.seconds[query])} | {ratio:.2f} | "
                f"{figures.objects_read[query]}/{figures.objects} | "
                f"{figures.row_groups_read[query]}/{figures.row_groups} | "
                f"{figures.files_opened[query]}/{figures.objects} |")
        lines.append("")
    return lines


def targets(result: Result | None) -> list[tuple[str, str, bool]]:
    """(11): the point lookup on the sorted layout and the filtered GROUP BY on the
    partitioned one read a fraction of the objects and are faster than on the flat one."""
    if result is None:
        return []
    rows = []
    for query, layout in (("point", "sorted"), ("group", "partitioned")):
        figures, flat = result.layouts[layout], result.layouts["flat"]
        fraction = figures.objects_read[query] / figures.objects
        ratio = harness.median(figures.seconds[query]) / harness.median(flat.seconds[query])
        rows.append((f"(11) {QUERY_LABELS[query]} on the {layout} layout: a fraction of the "
                     "objects, faster than flat",
                     f"{figures.objects_read[query]}/{figures.objects} objects, "
                     f"{ratio:.2f} of flat's time", fraction < 1 and ratio < 1))
    return rows
