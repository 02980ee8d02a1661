"""The markdown report of a benchmark run (docs/BENCHMARKS.md), targets checked against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import auth_cost, harness, many_files, pruning
from benchmarks.workloads import Mixed, Samples, queries

MiB = 2**20
INGEST_LABELS = {
    "ingest.pyarrow": "in-process pyarrow `read_csv` (default parse options) + `write_table`",
    "ingest.pyarrow_newlines": "in-process pyarrow `read_csv` (`newlines_in_values=True`) + "
    "`write_table`",
    "ingest.duckdb": "in-process DuckDB `COPY (read_csv) TO parquet` (zstd)",
    "ingest.flight_local": "flight_lake DoPut (CSV), local storage",
    "ingest.http_local": "flight_lake `POST /v1/ingest` (curl -F), local storage",
    "ingest.flight_s3": "flight_lake DoPut (CSV), S3 storage (moto)",
}
QUERY_LABELS = {
    "duckdb": "in-process DuckDB over the same Parquet",
    "duckdb_memory": "in-process DuckDB, in-memory table",
    "bare_flight": "bare pyarrow Flight, GetFlightInfo + DoGet of one row",
    "flight": "flight_lake Flight, DoGet `{sql}` ticket (1 call)",
    "flight_info": "flight_lake Flight, GetFlightInfo + DoGet (2 calls)",
    "http": "flight_lake HTTP `POST /v1/sql` (JSON)",
    "roapi_http": "ROAPI HTTP `POST /api/sql` (JSON)",
    "roapi_flightsql": "ROAPI FlightSQL (ADBC driver)",
    "flightsql": "flight_lake Flight SQL (ADBC driver)",
}
SCAN_LABELS = {
    "scan.bare": "bare pyarrow Flight server, table in memory",
    "scan.flight_sql": "flight_lake DoGet `SELECT *`",
    "scan.flight_dataset": "flight_lake GetFlightInfo(path) + DoGet per object",
    "scan.roapi_flightsql": "ROAPI FlightSQL `SELECT *` (ADBC)",
    "scan.flightsql": "flight_lake Flight SQL `SELECT *` (ADBC)",
}


@dataclass
class Run:
    """Everything one benchmark run produced."""

    command: str
    rows: int
    csv_bytes: int
    big_rows: int
    big_bytes: int
    wide_columns: int
    wide_rows: int
    wide_bytes: int
    samples: Samples
    figures: dict[str, float]
    mixed: Mixed
    mixed_clients: int
    arrow_bytes: int
    machine: dict[str, str]
    seconds: float = 0.0
    layouts: pruning.Result | None = None
    many_files: many_files.Result | None = None


def _p50(values: list[float]) -> float:
    return harness.median(values)


def _ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}" if values else "-"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _ingest(run: Run) -> list[str]:
    s = run.samples
    mb = run.csv_bytes / 1e6
    base_pa, base_dd = _p50(s["ingest.pyarrow"]), _p50(s["ingest.duckdb"])
    base_nl = _p50(s["ingest.pyarrow_newlines"])
    lines = [
        f"## 1-3. Ingest of the {run.rows:,}-row CSV ({run.csv_bytes / MiB:.1f} MiB)",
        "",
        f"{len(s['ingest.pyarrow'])} interleaved rounds after one warm-up round; each row of the",
        "table ran once per round, in a rotating order. Ratios are of medians. Both pyarrow",
        "baselines write zstd Parquet in flight_lake's row groups (131,072 rows); one parses",
        "with the default options, the other with `newlines_in_values=True` (this file has",
        "line breaks inside quoted values, which the default chunker reads right only while no",
        "block boundary falls inside one). The flight_lake figures include the client (a",
        "plain pyarrow client sending 1 MiB chunks, or `curl -F`), the catalog commit, and",
        "(HTTP) starting `curl`.",
        "",
        "| path | median s | min-max s | MB/s | x pyarrow (default) | x pyarrow (newlines) "
        "| x DuckDB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in INGEST_LABELS.items():
        values = s[key]
        median = _p50(values)
        lines.append(
            f"| {label} | {median:.2f} | {_spread(values)} | {mb / median:.0f} | "
            f"{median / base_pa:.2f} | {median / base_nl:.2f} | {median / base_dd:.2f} |"
        )
    s3_ratio = _p50(s["ingest.flight_s3"]) / _p50(s["ingest.flight_local"])
    lines += ["", f"S3 (moto) against local storage, both DoPut: **{s3_ratio:.2f}x**.", ""]
    return lines


def _latency(run: Run) -> list[str]:
    lines = [
        "## 4. Query latency, warm (milliseconds, measured at the client)",
        "",
        f"{len(run.samples['query.count(*).flight'])} interleaved rounds after two warm-up "
        "rounds; ROAPI loads the Parquet into memory at start (its default). The floor of a",
        "query is the bare Flight round trip plus in-process DuckDB on an in-memory table,",
        "each the p50 of this run.",
        "",
    ]
    for label, sql in queries(run.rows).items():
        roapi_flight = _p50(run.samples[f"query.{label}.roapi_flightsql"])
        roapi_http = _p50(run.samples[f"query.{label}.roapi_http"])
        lines += [
            f"### {label}: `{sql}`",
            "",
            "| path | p50 | p95 | x ROAPI FlightSQL p50 | x ROAPI HTTP p50 |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, name in QUERY_LABELS.items():
            values = run.samples[f"query.{label}.{key}"]
            p50 = _p50(values)
            lines.append(
                f"| {name} | {_ms(p50)} | {_ms(harness.quantile(values, 0.95))} | "
                f"{p50 / roapi_flight:.2f} | {p50 / roapi_http:.2f} |"
            )
        floor = _floor(run, label)
        lines.append(f"| floor (bare Flight round trip + DuckDB in memory) | {_ms(floor)} | - | "
                     f"{floor / roapi_flight:.2f} | {floor / roapi_http:.2f} |")
        lines.append("")
    return lines


def _floor(run: Run, label: str) -> float:
    """The latency floor of query ``label``: bare Flight round trip + in-memory DuckDB."""
    return (_p50(run.samples[f"query.{label}.bare_flight"])
            + _p50(run.samples[f"query.{label}.duckdb_memory"]))


def _scan(run: Run) -> list[str]:
    bare = _p50(run.samples["scan.bare"])
    lines = [
        f"## 5. Full scan: {run.rows:,} rows ({run.arrow_bytes / MiB:.0f} MiB of Arrow)",
        "",
        f"{len(run.samples['scan.bare'])} interleaved rounds after a warm-up round.",
        "",
        "| path | median s | min-max s | MB/s of Arrow | % of bare Flight |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in SCAN_LABELS.items():
        values = run.samples[key]
        median = _p50(values)
        lines.append(
            f"| {label} | {median:.3f} | {_spread(values, 3)} | "
            f"{run.arrow_bytes / 1e6 / median:.0f} | {bare / median:.0%} |"
        )
    return [*lines, ""]


def _memory(run: Run) -> list[str]:
    f = run.figures
    lines = [
        f"## 6. Server memory while ingesting a {run.big_bytes / 1e9:.2f} GB CSV "
        f"({run.big_rows:,} rows)",
        "",
        "A fresh server per storage; resident memory of its process sampled every 20 ms. S3",
        "(moto) only in the full run.",
        "",
        "| storage | moment | RSS | above idle | seconds | MB/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for where, storage in (("", "local"), ("s3.", "S3 (moto)")):
        if f"memory.{where}idle" not in f:
            continue
        idle = f[f"memory.{where}idle"]
        lines.append(f"| {storage} | idle, after start | {idle / MiB:.0f} MiB | - | - | - |")
        for moment, key in (("DoPut", "put"), ("`POST /v1/ingest`", "post")):
            peak, seconds = f[f"memory.{where}peak_{key}"], f[f"memory.{where}{key}_seconds"]
            lines.append(
                f"| {storage} | peak during {moment} | {peak / MiB:.0f} MiB | "
                f"{(peak - idle) / MiB:.0f} MiB | {seconds:.1f} | "
                f"{run.big_bytes / 1e6 / seconds:.0f} |"
            )
    return [*lines, ""]


def _wide(run: Run) -> list[str]:
    f = run.figures
    mb = run.wide_bytes / 1e6
    ours, theirs = f["wide.put_seconds"], f["wide.pyarrow_seconds"]
    narrow = _p50(run.samples["ingest.flight_local"])
    narrow_rate = run.csv_bytes / 1e6 / narrow
    return [
        f"## 14. A wide CSV: {run.wide_columns:,} columns x {run.wide_rows:,} rows "
        f"({mb:.0f} MB)",
        "",
        "Integers, decimals, words and dates in turn; one DoPut into a fresh server on local",
        "storage, beside in-process pyarrow (default parse options) on the same file.",
        "",
        "| path | seconds | MB/s | peak RSS above idle |",
        "|---|---:|---:|---:|",
        f"| flight_lake DoPut (CSV), local storage | {ours:.1f} | {mb / ours:.0f} | "
        f"{f['wide.peak_above_idle'] / MiB:.0f} MiB |",
        f"| in-process pyarrow `read_csv` + `write_table` | {theirs:.1f} | {mb / theirs:.0f} "
        "| - |",
        "",
        f"Per megabyte the wide file costs {narrow_rate / (mb / ours):.2f}x the workers file's "
        f"DoPut ({narrow_rate:.0f} MB/s in section 1).",
        "",
    ]


def _mixed(run: Run) -> list[str]:
    mixed = run.mixed
    total = sum(len(values) for values in mixed.latencies.values())
    lines = [
        f"## 7. {run.mixed_clients} concurrent clients for {mixed.seconds:.0f} s",
        "",
        "Each client thread picks Flight or HTTP at random, and a small CSV ingest (1 in 8) or",
        "one of the four queries; busy refusals are retried (Retry-After, capped at 1 s).",
        "",
        f"- operations completed: {total:,} ({total / mixed.seconds:.1f}/s)",
        f"- busy refusals (retried): {mixed.busy_refusals}; errors: **{mixed.error_count}**",
        "",
        "| operation | count | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for kind, values in sorted(mixed.latencies.items()):
        lines.append(
            f"| {kind} | {len(values)} | {_ms(_p50(values))} | "
            f"{_ms(harness.quantile(values, 0.99))} |"
        )
    if mixed.errors:
        lines += ["", "First errors:", "", *[f"- `{error}`" for error in mixed.errors]]
    return [*lines, ""]


def _flight_sql(run: Run) -> list[str]:
    """Issue 9: the same ADBC client against flight_lake's and ROAPI's Flight SQL."""
    p = {key: _p50(values) for key, values in run.samples.items()}
    lines = [
        "## 10. Flight SQL: the ADBC driver against flight_lake and against ROAPI",
        "",
        "Both columns are the same client (`adbc-driver-flightsql`'s DB-API, a new cursor per",
        "query, as SQL tools do), measured in the rounds of sections 4 and 5. The driver",
        "prepares every statement: CreatePreparedStatement, GetFlightInfo, DoGet and",
        "ClosePreparedStatement, four calls where flight_lake's JSON dialect needs two. The",
        "last column is what those two extra calls and the driver add over the JSON",
        "GetFlightInfo + DoGet of the same query in the same rounds.",
        "",
        "| query | flight_lake p50 ms | ROAPI p50 ms | x ROAPI | JSON 2 calls p50 ms | "
        "ADBC - JSON ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in queries(run.rows):
        ours, theirs = p[f"query.{label}.flightsql"], p[f"query.{label}.roapi_flightsql"]
        json_calls = p[f"query.{label}.flight_info"]
        lines.append(f"| {label} | {_ms(ours)} | {_ms(theirs)} | {ours / theirs:.2f} | "
                     f"{_ms(json_calls)} | {_ms(ours - json_calls)} |")
    ours, theirs = p["scan.flightsql"], p["scan.roapi_flightsql"]
    lines += [
        f"| full scan (`SELECT *`, s) | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | "
        f"{p['scan.flight_sql']:.3f} | {ours - p['scan.flight_sql']:.3f} |",
        "",
    ]
    inside = {key.rsplit(".", 1)[1]: value for key, value in run.figures.items()
              if key.startswith("flightsql.server.")}
    if inside:
        lines += [
            "Time inside flight_lake's handlers (median over all the queries above, from the",
            "server's `flight_request` log events); the rest of a call is gRPC, the Python",
            "server's threads and the driver. Where the ADBC column misses ROAPI's, compare",
            "the ADBC - JSON column with these: the two extra calls cost the handlers under a",
            "millisecond, the rest is the round trips through pyarrow's gRPC server, which",
            "ROAPI's Rust server makes faster; top-10 is also DuckDB's sort (section 4).",
            "",
            "| Flight SQL call | server ms |",
            "|---|---:|",
            *[f"| {command} | {value * 1000:.2f} |" for command, value in sorted(inside.items())],
            "",
        ]
    return lines


def targets(run: Run) -> list[tuple[str, str, bool]]:
    """Each target of issue 5 with the figure this run measured and whether it was met."""
    s = run.samples
    p = {key: _p50(values) for key, values in s.items()}
    rows: list[tuple[str, str, bool]] = []
    for key, front, allowed in (("flight_local", "DoPut", 1.1), ("http_local", "HTTP", 1.2)):
        ratio, newlines = (p[f"ingest.{key}"] / p["ingest.pyarrow"],
                           p[f"ingest.{key}"] / p["ingest.pyarrow_newlines"])
        rows.append((f"(1-2) {front} ingest ≤ {allowed:g}x pyarrow (default parse options)",
                     f"{ratio:.2f}x ({newlines:.2f}x the newlines_in_values baseline)",
                     ratio <= allowed))
    ratio = p["ingest.flight_s3"] / p["ingest.flight_local"]
    rows.append(("(3) S3 ingest ≤ 1.3x local", f"{ratio:.2f}x", ratio <= 1.3))
    wide = run.figures["wide.peak_above_idle"] / MiB
    rows.append((f"(14) wide CSV ({run.wide_columns:,} columns) < 512 MiB above idle",
                 f"{wide:.0f} MiB in {run.figures['wide.put_seconds']:.1f} s", wide < 512))
    for label in queries(run.rows):
        for via in ("flight", "flight_info"):
            ours, theirs = p[f"query.{label}.{via}"], p[f"query.{label}.roapi_flightsql"]
            calls = "1 call" if via == "flight" else "GetFlightInfo+DoGet"
            rows.append((
                f"(4) Flight ({calls}) {label} p50 ≤ ROAPI FlightSQL",
                f"{_ms(ours)} vs {_ms(theirs)} ms ({ours / theirs:.2f}x)",
                ours <= theirs,
            ))  # fmt: skip
        allowed = 1.0 if label in ("filtered GROUP BY", "top-10 ORDER BY") else 1.5
        ours, theirs = p[f"query.{label}.http"], p[f"query.{label}.roapi_http"]
        rows.append((
            f"(4) HTTP {label} p50 ≤ {allowed:g}x ROAPI HTTP",
            f"{_ms(ours)} vs {_ms(theirs)} ms ({ours / theirs:.2f}x)",
            ours <= allowed * theirs,
        ))  # fmt: skip
    for label in queries(run.rows):
        ours, floor = p[f"query.{label}.flight_info"], _floor(run, label)
        rows.append((
            f"(10) Flight (GetFlightInfo+DoGet) {label} p50 ≤ 1.5x floor",
            f"{_ms(ours)} vs {_ms(floor)} ms ({ours / floor:.2f}x)",
            ours <= 1.5 * floor,
        ))  # fmt: skip
    share = p["scan.bare"] / p["scan.flight_sql"]
    rows.append(("(5) DoGet scan ≥ 70% of bare Flight", f"{share:.0%}", share >= 0.7))
    faster = p["scan.roapi_flightsql"] / p["scan.flight_sql"]
    rows.append(("(5) DoGet scan faster than ROAPI FlightSQL", f"{faster:.2f}x", faster > 1.0))
    for label in queries(run.rows):
        ours, theirs = p[f"query.{label}.flightsql"], p[f"query.{label}.roapi_flightsql"]
        rows.append((
            f"(10) Flight SQL (ADBC) {label} p50 ≤ 0.8x ROAPI FlightSQL (ADBC)",
            f"{_ms(ours)} vs {_ms(theirs)} ms ({ours / theirs:.2f}x)",
            ours <= 0.8 * theirs,
        ))  # fmt: skip
    faster = p["scan.roapi_flightsql"] / p["scan.flightsql"]
    rows.append(("(10) Flight SQL (ADBC) scan at least as fast as ROAPI FlightSQL (ADBC)",
                 f"{faster:.2f}x", faster >= 1.0))
    for where, storage in (("", "local"), ("s3.", "S3")):
        if f"memory.{where}idle" not in run.figures:
            continue
        idle = run.figures[f"memory.{where}idle"]
        for key, label in (("peak_put", "DoPut"), ("peak_post", "HTTP")):
            above = (run.figures[f"memory.{where}{key}"] - idle) / MiB
            name = (f"(6) {label} ingest of the {run.big_bytes / 1e9:.2f} GB CSV, {storage}, "
                    "< 512 MiB above idle")
            rows.append((name, f"{above:.0f} MiB", above < 512))
    errors = run.mixed.error_count
    rows.append(("(7) no errors but busy refusals", f"{errors} errors", errors == 0))
    rows.extend(auth_cost.targets(s, run.rows))
    rows.extend(pruning.targets(run.layouts))
    return rows


def render(run: Run) -> str:
    info = run.machine
    lines = [
        "# Benchmarks: flight_lake beside its baselines and ROAPI",
        "",
        "Written by `python -m benchmarks.run` (issue 5). Everything runs on 127.0.0.1 on this",
        "machine; flight_lake is `python -m flight_lake serve` in a subprocess, measured from a",
        "client process. Every ratio compares two figures measured in this same run. The load",
        "average is the machine's as the run began (it is shared; other work adds noise).",
        "",
        f"- command: `{run.command}` ({run.seconds:.0f} s)",
        f"- date: {info['date']}; revision: {harness.git_revision()}",
        f"- machine: {info['cpu']}; {info['memory']} RAM; {info['os']}; {info['load']}",
        f"- software: Python {info['python']}; {info['versions']}",
        "",
        "## Targets",
        "",
        "| target | this run | |",
        "|---|---|---|",
        *[f"| {name} | {figure} | {_verdict(met)} |" for name, figure, met in targets(run)],
        "",
        *_ingest(run),
        *_latency(run),
        *_scan(run),
        *_memory(run),
        *_wide(run),
        *_mixed(run),
        *auth_cost.section(run.samples, run.rows),
        *_flight_sql(run),
        *pruning.section(run.layouts),
        *many_files.section(run.many_files),
    ]
    return "\n".join(lines)


def write(run: Run, path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = ""  # sections other commands write (.soak, .replica_lag, .spark_queries) survive
    if path.exists():
        for name in ("soak", "replicas", "spark"):
            start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
            old = path.read_text()
            if start in old and end in old:
                kept += f"\n{start}" + old.split(start, 1)[1].split(end, 1)[0] + f"{end}\n"
    path.write_text(render(run) + kept)
    return {name: (figure, met) for name, figure, met in targets(run)}
