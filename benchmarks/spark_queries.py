"""DuckDB and Spark on the same four queries: ``python -m benchmarks.spark_queries``.

The workers CSV (5,000,000 rows by default) is ingested once into a lake on a local folder;
its Iceberg table is the lake's own if the lake wrote one, else written here by Spark from
the committed Parquet objects (one CTAS in a session of this benchmark's own). Then the four
warm queries of ``benchmarks.workloads`` run through ``Lake.read`` on two lakes over that
folder, one per engine (``query.engine = "duckdb"`` and ``"spark"``), interleaved round by
round; the times are the whole read (guard, engine, every Arrow batch in this process).
Spark's start-up is measured apart: the server's launch until it answers ``SELECT 1``, and
the flight_lake session's first query (session, catalog, first table load). Writes the
"DuckDB and Spark" section of ``docs/BENCHMARKS.md`` (kept by ``benchmarks.run``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import harness, spark_server
from benchmarks.workloads import TABLE, queries
from flight_lake.lake import Lake
from flight_lake.settings import Settings, load_settings
from flight_lake.spark_engine import SPARK_CATALOG, WAREHOUSE, open_session, session_conf

REPORT = harness.REPO / "docs" / "BENCHMARKS.md"
START, END = "<!-- spark -->", "<!-- /spark -->"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(root: Path, **query: object) -> Settings:
    return load_settings(config_file=None, secrets_file=None,
                         storage={"uri": str(root / "lake")},
                         ingest={"max_upload_bytes": 8 * 1024**3, "spool_dir": str(root)},
                         query={"timeout_seconds": 600, **query},
                         cache={"max_bytes": 2 * 1024**3})


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(rows: int, rounds: int, cores: int, workdir: Path) -> dict:
    machine = harness.machine()
    csv = harness.fixture(rows)
    _say(f"fixture {csv}")
    settings = _settings(workdir)
    with Lake(settings) as lake:
        ingest = _timed(lambda: lake.ingest.ingest_csv(TABLE, "create", _chunks(csv)))
        _say(f"ingested {rows:,} rows in {ingest:.1f} s")
    started = time.perf_counter()
    server = spark_server.start(workdir / "spark", cores=cores, driver_memory="4g")
    _say(f"Spark Connect answered after {server.start_seconds:.1f} s")
    try:
        duck = Lake(settings).start()
        _iceberg_table(duck, server.url)
        spark = Lake(_settings(workdir, engine="spark", spark_remote=server.url)).start()
        first = _timed(lambda: spark.read(f"SELECT count(*) AS n FROM {TABLE}").read_all())
        cached = duck.query.wait_cached(TABLE, timeout=600)
        suite = queries(rows)
        samples: dict[str, dict[str, list[float]]] = {name: {"duckdb": [], "spark": []}
                                                     for name in suite}
        answers: dict[str, dict[str, int]] = {name: {} for name in suite}
        for index in range(rounds + 1):  # round 0 warms both up and is not kept
            order = [("duckdb", duck), ("spark", spark)]
            for name, sql in suite.items():
                for engine, lake in order if index % 2 else reversed(order):
                    began = time.perf_counter()
                    table = lake.read(sql).read_all()
                    seconds = time.perf_counter() - began
                    answers[name][engine] = table.num_rows
                    if index:
                        samples[name][engine].append(seconds)
            _say(f"round {index} done")
        spark.close()
        duck.close()
    finally:
        server.stop()
    return {"machine": machine, "rows": rows, "rounds": rounds, "cores": cores,
            "ingest": ingest, "cached": cached, "server_start": server.start_seconds,
            "first_query": first,
            "samples": samples, "answers": answers, "suite": suite,
            "seconds": time.perf_counter() - started}


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            yield block


def _iceberg_table(lake: Lake, remote: str) -> None:
    """The dataset's Iceberg table: the lake's own, or one CTAS from its Parquet objects."""
    if lake.storage.exists(f"{WAREHOUSE}/lake/{TABLE}/metadata/version-hint.text"):
        _say("Iceberg table written by the lake")
        return
    manifest = lake.catalog.get(TABLE)
    folder = lake.storage.url(manifest.objects[0].key).rsplit("/", 1)[0]  # the version's
    writer = open_session(remote, session_conf(lake.storage))
    try:
        seconds = _timed(lambda: writer.sql(
            f"CREATE TABLE {SPARK_CATALOG}.lake.{TABLE} USING iceberg AS "
            f"SELECT * FROM parquet.`file://{folder}`"))
    finally:
        writer.stop()
    _say(f"Iceberg table written by Spark in {seconds:.1f} s")


def render(result: dict, command: str) -> str:
    machine = result["machine"]
    lines = [
        START,
        "## DuckDB and Spark: the same four queries (issue 13)",
        "",
        f"- command: `{command}` ({result['seconds']:.0f} s); date: {machine['date']}; "
        f"revision: {harness.git_revision()}",
        f"- machine: {machine['cpu']}; {machine['memory']} RAM; {machine['load']}",
        f"- data: the workers CSV, {result['rows']:,} rows, one dataset on a local folder "
        f"(ingested in {result['ingest']:.1f} s); Spark reads its Iceberg table",
        f"- Spark: a local Spark Connect server, `local[{result['cores']}]`, 4 GiB driver, "
        "started by `benchmarks/spark_server.py`; DuckDB: the lake's own engine, "
        + ("its in-memory copy of the dataset loaded before timing" if result["cached"]
           else "reading the Parquet objects (the dataset did not fit the cache budget)"),
        "- each time is one whole `Lake.read` in this process (guard, engine, every Arrow "
        f"batch received); median of {result['rounds']} interleaved rounds after one "
        "warm-up round",
        "",
        "Spark's start-up, kept apart from the query times:",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| server launch until it answers `SELECT 1` | {result['server_start']:.1f} |",
        f"| flight_lake's first Spark query (session, catalog, first table load) | "
        f"{result['first_query']:.1f} |",
        "",
        "| query | DuckDB p50 ms | Spark p50 ms | Spark / DuckDB | rows |",
        "|---|---|---|---|---|",
    ]
    for name, sql in result["suite"].items():
        duck = harness.median(result["samples"][name]["duckdb"]) * 1000
        spark = harness.median(result["samples"][name]["spark"]) * 1000
        rows = result["answers"][name]
        same = rows["duckdb"] if rows["duckdb"] == rows["spark"] else f"{rows}"
        lines.append(f"| {name}: `{sql}` | {duck:.1f} | {spark:.1f} | {spark / duck:.1f}x "
                     f"| {same} |")
    lines += [
        "",
        "On one machine Spark cannot win: every query pays its planning, task scheduling "
        "and the Connect round trips, where DuckDB answers from memory in the same process. "
        "Spark is there for data and clusters larger than one server (docs/SCALE_OUT.md).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_report(section: str, path: Path = REPORT) -> None:
    harness.write_section(section, START, END, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cores", type=int, default=2, help="Spark's local[N]")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.spark_queries" + "".join(
        f" {shlex.quote(arg)}" for arg in (argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="flight-lake-spark-bench-") as folder:
        result = run(args.rows, args.rounds, args.cores, Path(folder))
    section = render(result, command)
    write_report(section, args.out)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
