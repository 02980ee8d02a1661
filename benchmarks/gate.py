"""The end-to-end acceptance gate: the closing check of the original five-service plan.

    python -m benchmarks.gate            # 500,000 rows; writes docs/BASELINE.md

1. generates ``workers_500k.csv`` (cached; re-made only if its hash changed);
2. starts moto's S3 server and ``flight-lake serve`` against it, on free loopback ports;
3. ingests the file with ``curl -F file=@… /v1/ingest?name=workers_500k`` and a second copy
   through Flight DoPut as ``workers_500k_flight``;
4. asserts each manifest's ``row_count``, the Parquet objects under ``datasets/workers_500k/``
   (listed in the bucket, their footers summing to the rows), ``[{"count_star()":500000}]``
   from ``POST /v1/sql``, and the ``state='IL'`` group-by against counts computed here
   from the CSV with Python's ``csv`` module;
5. restarts the server and asserts the catalog is intact and queryable;
6. records ingest time, query latency, Parquet size and the server's peak memory in
   ``docs/BASELINE.md``. Exits 0 only if every assertion held.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.flight as flight
import pyarrow.parquet as pq

from benchmarks import generate, harness
from benchmarks.harness import GateFailure, check
from benchmarks.lake_clients import curl_ingest, flight_put_csv, flight_sql, http_json, http_sql

HTTP_NAME = "workers_500k"
FLIGHT_NAME = "workers_500k_flight"
COUNT_SQL = "SELECT count(*) FROM {name}"
GROUP_SQL = (
    "SELECT role, count(*) AS workers FROM {name} WHERE state = 'IL' GROUP BY role ORDER BY role"
)
DEFAULT_BASELINE = harness.REPO / "docs" / "BASELINE.md"
CATALOG_FIELDS = ("dataset_id", "version", "row_count", "schema_fingerprint", "size_bytes")


@dataclass
class Figures:
    """What the gate measured along the way, for docs/BASELINE.md."""

    rows: int = 0
    csv_bytes: int = 0
    csv_sha256: str = ""
    start_seconds: float = 0.0
    idle_rss: int = 0
    ingest_seconds: dict[str, float] = field(default_factory=dict)
    ingest_peak_rss: dict[str, int] = field(default_factory=dict)
    parquet: dict[str, tuple[int, int]] = field(default_factory=dict)  # name → (objects, bytes)
    latency: dict[str, list[float]] = field(default_factory=dict)
    restart_seconds: float = 0.0
    peak_rss: int = 0
    machine: dict[str, str] = field(default_factory=harness.machine)  # taken as the gate starts
    checks: list[str] = field(default_factory=list)


def say(figures: Figures, message: str) -> None:
    figures.checks.append(message)
    print(f"  ok  {message}", flush=True)


def expected_il_counts(path: Path) -> tuple[int, dict[str, int]]:
    """Rows and IL workers per role, read from the CSV independently of the server."""
    counts: Counter[str] = Counter()
    rows = 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        state, role = header.index("state"), header.index("role")
        for record in reader:
            rows += 1
            if record[state] == "IL":
                counts[record[role]] += 1
    return rows, dict(counts)


def check_manifest(figures: Figures, manifest: dict[str, Any], name: str, rows: int) -> None:
    check(manifest.get("name") == name, f"manifest names {manifest.get('name')!r}, not {name!r}")
    check(
        manifest.get("row_count") == rows,
        f"manifest of {name}: row_count={manifest.get('row_count')}, expected {rows}",
    )
    say(figures, f"manifest of {name}: row_count={rows}")


def check_objects(
    figures: Figures, moto: harness.MotoS3, bucket: str, prefix: str, manifest: dict, rows: int
) -> None:
    """The manifest's objects are Parquet files in the bucket whose footers sum to ``rows``."""
    name = manifest["name"]
    listed = moto.list_objects(bucket, f"{prefix}/datasets/{name}/")
    keys = {item["Key"]: item["Size"] for item in listed}
    parquet_keys = [key for key in keys if key.endswith(".parquet")]
    check(bool(parquet_keys), f"no Parquet objects under s3://{bucket}/{prefix}/datasets/{name}/")
    objects = manifest.get("objects") or []
    check(bool(objects), f"manifest of {name} lists no objects")
    footer_rows = 0
    for item in objects:
        key = f"{prefix}/{item['key']}"
        check(key in keys, f"manifest object {item['key']} is not in the bucket")
        check(key.endswith(".parquet"), f"manifest object {item['key']} is not a .parquet file")
        body = moto.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        footer_rows += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    check(footer_rows == rows, f"Parquet footers of {name} hold {footer_rows} rows, not {rows}")
    size = sum(keys[f"{prefix}/{item['key']}"] for item in objects)
    figures.parquet[name] = (len(objects), size)
    say(figures, f"{len(objects)} Parquet object(s) under datasets/{name}/ ({size:,} bytes)")


def check_queries(
    figures: Figures,
    server: harness.LakeServer,
    rows: int,
    il_counts: dict[str, int],
    when: str = "",
) -> None:
    with httpx.Client(timeout=120) as http:
        expected = f'[{{"count_star()":{rows}}}]'
        response = http.post(
            f"{server.http_url}/v1/sql", json={"sql": COUNT_SQL.format(name=HTTP_NAME)}
        )
        body = response.text.strip()
        check(
            response.status_code == 200 and body == expected,
            f"/v1/sql count(*) answered {response.status_code} {body[:300]!r}, not {expected}",
        )
        say(figures, f'{when}POST /v1/sql count(*) → [{{"count_star()":{rows}}}]')
        answer = http_sql(http, server.http_url, GROUP_SQL.format(name=HTTP_NAME))
        got = {row["role"]: row["workers"] for row in answer}
        check(got == il_counts, f"IL group-by over HTTP: {got} != CSV counts {il_counts}")
        say(figures, f"{when}IL group-by over HTTP matches the CSV ({sum(got.values())} workers)")
    client = flight.connect(server.flight_url)
    try:
        count = flight_sql(client, COUNT_SQL.format(name=FLIGHT_NAME)).to_pylist()
        check(count == [{"count_star()": rows}], f"Flight count(*) answered {count}")
        table = flight_sql(client, GROUP_SQL.format(name=FLIGHT_NAME))
        got = dict(zip(table["role"].to_pylist(), table["workers"].to_pylist(), strict=True))
        check(got == il_counts, f"IL group-by over Flight: {got} != CSV counts {il_counts}")
        say(figures, f"{when}count(*) and IL group-by over Flight match on the DoPut copy")
    finally:
        client.close()


def measure_latency(figures: Figures, server: harness.LakeServer, repeats: int) -> None:
    """Warm query latency, interleaving the queries and both front ends."""
    queries = {"count(*)": COUNT_SQL, "IL group-by": GROUP_SQL}
    client = flight.connect(server.flight_url)
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(repeats + 1):  # the first round warms up and is dropped
                for label, sql in queries.items():
                    started = time.perf_counter()
                    http_sql(http, server.http_url, sql.format(name=HTTP_NAME))
                    http_seconds = time.perf_counter() - started
                    started = time.perf_counter()
                    flight_sql(client, sql.format(name=FLIGHT_NAME))
                    flight_seconds = time.perf_counter() - started
                    figures.latency.setdefault(f"{label}, HTTP", []).append(http_seconds)
                    figures.latency.setdefault(f"{label}, Flight", []).append(flight_seconds)
    finally:
        client.close()
    for samples in figures.latency.values():
        del samples[0]


def catalog_state(server: harness.LakeServer) -> dict[str, dict[str, Any]]:
    with httpx.Client(timeout=30) as http:
        listing = http_json(http, f"{server.http_url}/v1/catalog")
        entries = listing.get("datasets", listing) if isinstance(listing, dict) else listing
        names = {entry["name"] if isinstance(entry, dict) else entry for entry in entries}
        state = {}
        for name in (HTTP_NAME, FLIGHT_NAME):
            check(name in names, f"GET /v1/catalog does not list {name}: {sorted(names)}")
            manifest = http_json(http, f"{server.http_url}/v1/catalog/{name}")
            state[name] = {key: manifest.get(key) for key in CATALOG_FIELDS}
            state[name]["objects"] = sorted(item["key"] for item in manifest.get("objects", []))
    return state


def run_gate(rows: int, seed: int, keep: bool = False) -> Figures:
    figures = Figures(rows=rows)
    print(f"gate: {rows:,} rows", flush=True)
    csv_path = harness.fixture(rows, seed=seed)
    meta = harness.fixture_meta(csv_path)
    figures.csv_bytes, figures.csv_sha256 = meta["bytes"], meta["sha256"]
    counted_rows, il_counts = expected_il_counts(csv_path)
    check(counted_rows == rows, f"the fixture has {counted_rows} rows, expected {rows}")
    say(figures, f"fixture {csv_path.name}: {rows:,} rows, {figures.csv_bytes:,} bytes")
    bucket = f"gate-{uuid.uuid4().hex[:10]}"
    prefix = "lake"
    with harness.workdir(keep) as work, harness.MotoS3() as moto:
        if keep:
            print(f"work folder (kept): {work}", flush=True)
        moto.create_bucket(bucket)
        server = harness.LakeServer(moto.storage_env(bucket, prefix), work / "server")
        try:
            figures.start_seconds = server.start()
            assert server.memory is not None
            time.sleep(0.5)
            figures.idle_rss = server.memory.reset_peak()
            say(figures, f"server up on {server.http_url} and {server.flight_url} (S3 on moto)")

            manifest, seconds = curl_ingest(server.http_url, HTTP_NAME, csv_path)
            figures.ingest_seconds["HTTP (curl -F)"] = seconds
            figures.ingest_peak_rss["HTTP (curl -F)"] = server.memory.peak
            check_manifest(figures, manifest, HTTP_NAME, rows)
            check_objects(figures, moto, bucket, prefix, manifest, rows)

            server.memory.reset_peak()
            client = flight.connect(server.flight_url)
            try:
                started = time.perf_counter()
                manifest = flight_put_csv(client, FLIGHT_NAME, csv_path)
                figures.ingest_seconds["Flight DoPut"] = time.perf_counter() - started
            finally:
                client.close()
            figures.ingest_peak_rss["Flight DoPut"] = server.memory.peak
            check_manifest(figures, manifest, FLIGHT_NAME, rows)
            check_objects(figures, moto, bucket, prefix, manifest, rows)

            check_queries(figures, server, rows, il_counts)
            measure_latency(figures, server, repeats=20)
            figures.peak_rss = max(figures.ingest_peak_rss.values())

            before = catalog_state(server)
            code = server.stop()
            check(code == 0, f"server did not stop cleanly on SIGTERM (exit code {code})")
            figures.restart_seconds = server.start()
            after = catalog_state(server)
            check(after == before, f"catalog changed across a restart:\n{before}\n{after}")
            say(figures, "after a restart: the catalog lists both datasets, manifests unchanged")
            check_queries(figures, server, rows, il_counts, when="after the restart: ")
        except Exception as failure:
            message = str(failure) if isinstance(failure, GateFailure) else repr(failure)
            tail = server.log_tail()
            if tail not in message:
                message = f"{message}\n{tail}"
            raise GateFailure(message) from failure
        finally:
            server.stop()
    return figures


def _mb(value: int) -> str:
    return f"{value / 2**20:,.1f} MiB"


def write_baseline(figures: Figures, path: Path, command: str) -> None:
    info = figures.machine
    mb = figures.csv_bytes / 2**20
    lines = [
        "# Baseline: the acceptance gate",
        "",
        "Written by `python -m benchmarks.gate` (issue 3). The server runs as a subprocess",
        "(`python -m flight_lake serve`) against moto's S3 server on loopback; every figure is",
        "from one gate run. Query latency is measured from the client, warm, over 20 rounds",
        "with both queries and both front ends interleaved.",
        "",
        f"- command: `{command}`",
        f"- date: {info['date']}; revision: {harness.git_revision()}",
        f"- machine: {info['cpu']}; {info['memory']} RAM; {info['os']}; {info['load']}",
        f"- software: Python {info['python']}; {info['versions']}",
        f"- fixture: {figures.rows:,} rows, {figures.csv_bytes:,} bytes, sha256 "
        f"`{figures.csv_sha256[:16]}…` (seed {generate.DEFAULT_SEED})",
        "",
        "## Ingest (S3 storage on moto)",
        "",
        "| path | seconds | MB/s of CSV | Parquet objects | Parquet bytes | server peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (label, seconds), name in zip(
        figures.ingest_seconds.items(), (HTTP_NAME, FLIGHT_NAME), strict=True
    ):
        objects, size = figures.parquet[name]
        peak = figures.ingest_peak_rss[label]
        lines.append(
            f"| {label} → `{name}` | {seconds:.2f} | {mb / seconds:.0f} | {objects} | "
            f"{size:,} ({size / figures.csv_bytes:.0%} of CSV) | {_mb(peak)} |"
        )
    lines += [
        "",
        "## Query latency (warm, milliseconds)",
        "",
        "| query | p50 | p95 | min | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, samples in figures.latency.items():
        ms = [sample * 1000 for sample in samples]
        lines.append(
            f"| {label} | {harness.median(ms):.1f} | {harness.quantile(ms, 0.95):.1f} | "
            f"{min(ms):.1f} | {max(ms):.1f} |"
        )
    lines += [
        "",
        "## Server",
        "",
        f"- start-up until `/health` answers: {figures.start_seconds:.2f} s; after the restart: "
        f"{figures.restart_seconds:.2f} s",
        f"- resident memory idle: {_mb(figures.idle_rss)}; peak during the ingests: "
        f"{_mb(figures.peak_rss)} (+{_mb(figures.peak_rss - figures.idle_rss)}), sampled "
        "every 20 ms with psutil",
        "",
        "## Assertions that held",
        "",
        *[f"- {message}" for message in figures.checks],
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=generate.DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    parser.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help="report to write on success"
    )
    parser.add_argument("--no-baseline", action="store_true", help="write no report")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server log)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        figures = run_gate(args.rows, args.seed, keep=args.keep)
    except Exception as failure:  # a client error or a crash is a failure too, never a pass
        cause = failure.__cause__
        if not isinstance(failure, GateFailure) or not isinstance(cause, GateFailure | None):
            traceback.print_exc()
        print(f"GATE FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    if not args.no_baseline:
        command = "python -m benchmarks.gate" + (
            f" --rows {args.rows}" if args.rows != generate.DEFAULT_ROWS else ""
        )
        write_baseline(figures, args.baseline, command)
        print(f"wrote {args.baseline}")
    print(f"GATE PASSED in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
