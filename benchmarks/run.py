"""The benchmark runner of issue 5: flight_lake beside its baselines and ROAPI.

    python -m benchmarks.run            # full: 500,000 rows, a 10,000-column CSV, a ~4 GB
                                        # CSV into local storage and S3, 5 million rows in
                                        # three layouts; ~20 minutes
    python -m benchmarks.run --quick    # reduced, under two minutes
    python -m benchmarks.run --smoke    # the smallest run through every section (the test
                                        # suite's: it checks that it runs, not the numbers)

Starts everything on loopback (moto's S3, two ``flight-lake serve`` subprocesses on local
and S3 storage, ROAPI over the same Parquet, a bare pyarrow Flight server), runs the
workloads with interleaved rounds (and the layouts of ``benchmarks.pruning``, the many
files of ``benchmarks.many_files``), stops everything (also on failure), and writes
``docs/BENCHMARKS.md`` with the machine, the command, medians, spreads and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.flight as flight

from benchmarks import auth_cost, harness, many_files, peers, pruning, report, workloads
from benchmarks.harness import GateFailure, LakeServer, check
from benchmarks.lake_clients import flight_put_csv

DEFAULT_OUT = harness.REPO / "docs" / "BENCHMARKS.md"


@dataclass(frozen=True)
class Plan:
    rows: int
    ingest_repeats: int
    query_repeats: int
    scan_repeats: int
    mixed_clients: int
    mixed_seconds: float
    big_bytes: int
    small_rows: int
    wide_columns: int
    wide_rows: int
    memory_s3: bool  # the big CSV into S3 too (the full run only)
    layout_rows: int = 5_000_000  # 11: flat vs sorted vs partitioned
    layout_repeats: int = 15


FULL = Plan(500_000, 7, 50, 7, 16, 30.0, 4_000_000_000, 5_000, 10_000, 2_000, True)
QUICK = Plan(100_000, 2, 6, 2, 16, 5.0, 30_000_000, 1_000, 1_000, 300, False,
             layout_rows=20_000, layout_repeats=2)
SMOKE = replace(QUICK, rows=5_000, ingest_repeats=1, query_repeats=2, scan_repeats=1,
                mixed_seconds=1.0, big_bytes=3_000_000, small_rows=200, wide_rows=40,
                layout_rows=5_000, layout_repeats=1)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _parquet_files(lake: Path, manifest: dict) -> list[Path]:
    files = [lake / item["key"] for item in manifest["objects"]]
    for path in files:
        check(path.is_file(), f"the manifest's object {path} is not on disk")
    return files


def run(plan: Plan, command: str, keep: bool = False) -> report.Run:
    started = time.perf_counter()
    machine = harness.machine()  # before anything runs, so the load average is the machine's
    samples: workloads.Samples = {}
    figures: dict[str, float] = {}
    _say(f"fixtures: {plan.rows:,} rows, {plan.small_rows:,} rows, ~{plan.big_bytes:,} bytes")
    csv_path = harness.fixture(plan.rows)
    small_csv = harness.fixture(plan.small_rows)
    big_csv = harness.fixture(None, target_bytes=plan.big_bytes)
    big_meta = harness.fixture_meta(big_csv)
    csv_bytes = harness.fixture_meta(csv_path)["bytes"]
    wide_csv = harness.wide_fixture(plan.wide_columns, plan.wide_rows)

    with contextlib.ExitStack() as stack:
        work = stack.enter_context(harness.workdir(keep))
        if keep:
            _say(f"work folder: {work}")
        moto = stack.enter_context(harness.MotoS3())
        moto.create_bucket("bench")
        lake = work / "lake"
        local = LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(lake)}, work / "local")
        stack.callback(local.stop)
        s3 = LakeServer(moto.storage_env("bench"), work / "s3")
        stack.callback(s3.stop)
        local.start()
        s3.start()
        _say(f"servers up: local {local.flight_url}, s3 {s3.flight_url}")

        client = flight.connect(local.flight_url)
        manifest = flight_put_csv(client, workloads.TABLE, csv_path)
        client.close()
        check(manifest["row_count"] == plan.rows, f"{workloads.TABLE}: {manifest['row_count']}")
        parquet = _parquet_files(lake, manifest)

        _say(f"1-3 ingest: {plan.ingest_repeats} rounds")
        scratch = work / "scratch"
        scratch.mkdir()
        workloads.ingest_rounds(
            samples, csv_path, plan.rows, local, s3, scratch, plan.ingest_repeats
        )
        s3.stop()

        _say(f"14 wide CSV: {plan.wide_columns:,} columns x {plan.wide_rows:,} rows")
        wide = LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(work / "lake_wide")}, work / "wide")
        stack.callback(wide.stop)
        wide.start()
        workloads.wide_case(figures, wide, wide_csv, plan.wide_rows, scratch)
        wide.stop()

        _say(f"4 query latency: {plan.query_repeats} rounds")
        duck = peers.InProcessDuckDB(workloads.TABLE, parquet)
        stack.callback(duck.close)
        table_source = parquet[0] if len(parquet) == 1 else parquet[0].parent
        roapi = peers.Roapi(workloads.TABLE, table_source, work / "roapi.log")
        stack.callback(roapi.close)
        bare = peers.BareFlight(table_source, work / "bare.log")
        stack.callback(bare.close)
        workloads.latency_rounds(samples, plan.rows, local, duck, roapi, bare,
                                 plan.query_repeats)
        workloads.flight_sql_call_times(figures, local)
        duck.close()

        _say(f"9 authentication cost: {plan.query_repeats} rounds")
        opened = auth_cost.open_server(lake, work / "opened")
        secured = auth_cost.secured_server(lake, work / "secured")
        for server in (opened, secured):
            stack.callback(server.stop)
            server.start(timeout=180.0)  # a loaded machine starts Python slowly
        auth_cost.auth_rounds(samples, plan.rows, opened, secured, plan.query_repeats)
        opened.stop()
        secured.stop()

        _say(f"5 full scan: {plan.scan_repeats} rounds")
        arrow_bytes = workloads.scan_rounds(
            samples, plan.rows, local, bare, roapi, plan.scan_repeats
        )
        bare.close()
        roapi.close()

        _say(f"7 mixed: {plan.mixed_clients} clients for {plan.mixed_seconds:.0f} s")
        small_rows = harness.fixture_meta(small_csv)["rows"]
        mixed = workloads.concurrent_mix(
            local, small_csv, small_rows, plan.rows, plan.mixed_clients, plan.mixed_seconds
        )
        local.stop()

        _say(f"6 memory: ingesting {big_meta['bytes']:,} bytes")
        memory = LakeServer(
            {
                "FLIGHT_LAKE_STORAGE__URI": str(work / "lake_memory"),
                "FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES": str(4 * big_meta["bytes"]),
            },
            work / "memory",
        )
        stack.callback(memory.stop)
        memory.start()
        workloads.memory_case(figures, memory, big_csv, big_meta["rows"])
        memory.stop()
        if plan.memory_s3:
            _say(f"6 memory, S3: ingesting {big_meta['bytes']:,} bytes")
            moto.create_bucket("bench-memory")
            memory_s3 = LakeServer(
                {
                    **moto.storage_env("bench-memory"),
                    "FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES": str(4 * big_meta["bytes"]),
                },
                work / "memory_s3",
            )
            stack.callback(memory_s3.stop)
            memory_s3.start()
            workloads.memory_case(figures, memory_s3, big_csv, big_meta["rows"], "s3.")
            memory_s3.stop()

        _say(f"11 layouts: {plan.layout_rows:,} rows flat, sorted and partitioned")
        layouts = pruning.run(plan.layout_rows, work, plan.layout_repeats)

        _say(f"12 many files: {many_files.PARTS} files against one, {plan.ingest_repeats} rounds")
        many = many_files.run(csv_path, work, plan.ingest_repeats)

    return report.Run(
        command=command,
        rows=plan.rows,
        csv_bytes=csv_bytes,
        big_rows=big_meta["rows"],
        big_bytes=big_meta["bytes"],
        wide_columns=plan.wide_columns,
        wide_rows=plan.wide_rows,
        wide_bytes=wide_csv.stat().st_size,
        samples=samples,
        figures=figures,
        mixed=mixed,
        mixed_clients=plan.mixed_clients,
        arrow_bytes=arrow_bytes,
        machine=machine,
        seconds=time.perf_counter() - started,
        layouts=layouts,
        many_files=many,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="reduced run, under two minutes")
    parser.add_argument("--smoke", action="store_true",
                        help="the smallest run through every section: that it runs, not figures")
    parser.add_argument("--rows", type=int, help="rows of the main fixture")
    parser.add_argument("--mixed-seconds", type=float, help="length of the concurrent workload")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"the report to write (default: {DEFAULT_OUT.relative_to(harness.REPO)}; with "
        "--quick or --smoke, BENCHMARKS-quick.md in the fixture cache, so the full report "
        "stays)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.rows is not None:
        plan = replace(plan, rows=args.rows)
    if args.mixed_seconds is not None:
        plan = replace(plan, mixed_seconds=args.mixed_seconds)
    command = " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
    try:
        result = run(plan, command, keep=args.keep)
    except Exception as failure:
        if not isinstance(failure, GateFailure):
            traceback.print_exc()
        print(f"BENCHMARK FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    reduced = args.quick or args.smoke
    out = args.out or (harness.cache_dir() / "BENCHMARKS-quick.md" if reduced else DEFAULT_OUT)
    verdicts = report.write(result, out)
    _say(f"wrote {out} ({result.seconds:.0f} s)")
    for name, (figure, met) in verdicts.items():
        print(f"  {'met   ' if met else 'MISSED'}  {name}: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
