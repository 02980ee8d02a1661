"""Where the warm-query time goes, in one process: the engine against raw DuckDB.

    python -m benchmarks.engine_bound [--rows 500000] [--rounds 40]

Ingests the fixture into a temporary local lake, waits until the query cache holds it,
then times (interleaved, medians) each workload-4 query three ways: through
``QueryEngine.execute`` (guard, cached compressed copy, streaming reader), raw DuckDB over
the same Parquet, and raw DuckDB over an uncompressed in-memory table. The gap between the
engine and an end-to-end figure in docs/BENCHMARKS.md is the front end's share.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from benchmarks import harness, workloads
from flight_lake.lake import Lake
from flight_lake.settings import load_settings


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    csv_path = harness.fixture(args.rows)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(None, None, storage={"uri": f"{folder}/lake"},
                                 log={"level": "warning"})
        lake = Lake.open(settings)
        try:
            manifest = lake.ingest.ingest_csv(workloads.TABLE, "create", _chunks(csv_path))
            cached = lake.query.wait_cached(workloads.TABLE, 60)
            urls = [lake.storage.url(o.key) for o in manifest.objects]
            raw = duckdb.connect()
            raw.execute(f"CREATE VIEW parquet AS SELECT * FROM read_parquet({urls!r})")
            raw.execute("CREATE TABLE memory AS SELECT * FROM parquet")
            ways: dict[str, Callable[[str], object]] = {
                "engine (cached copy)": lambda sql: [b for b in lake.query.execute(sql)],
                "raw DuckDB, Parquet": lambda sql: raw.cursor().execute(
                    sql.replace(workloads.TABLE, "parquet")).to_arrow_table(),
                "raw DuckDB, uncompressed table": lambda sql: raw.cursor().execute(
                    sql.replace(workloads.TABLE, "memory")).to_arrow_table(),
            }
            print(f"rows={args.rows} cached={cached} rounds={args.rounds} (ms, p50)")
            for name, sql in workloads.queries(args.rows).items():
                samples: dict[str, list[float]] = {way: [] for way in ways}
                for _ in range(args.rounds):
                    for way, run in ways.items():
                        started = time.perf_counter()
                        run(sql)
                        samples[way].append(time.perf_counter() - started)
                cells = "  ".join(f"{way}: {statistics.median(times[3:]) * 1000:6.2f}"
                                  for way, times in samples.items())
                print(f"{name:18} {cells}")
        finally:
            lake.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
