"""The measured workloads of issue 5; each records samples into a ``Samples`` dict.

Comparisons are interleaved: every round runs each contender once, in a rotating order, so
that a noisy moment of this shared machine hurts all of them alike.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.flight as flight

from benchmarks import peers
from benchmarks.harness import GateFailure, LakeServer, check
from benchmarks.lake_clients import (
    curl_ingest,
    flight_put_csv,
    flight_sql,
    flight_sql_via_info,
    http_sql,
)

Samples = dict[str, list[float]]
TABLE = "workers"


def queries(rows: int) -> dict[str, str]:
    """The four warm queries of workload 4 (the point lookup hits an id that exists)."""
    return {
        "count(*)": f"SELECT count(*) FROM {TABLE}",
        "filtered GROUP BY": (
            f"SELECT role, count(*) AS workers, avg(hourly_rate) AS avg_rate FROM {TABLE} "
            "WHERE state = 'IL' GROUP BY role ORDER BY role"
        ),
        "point lookup": f"SELECT * FROM {TABLE} WHERE id = {max(1, rows * 3 // 4 + 7)}",
        "top-10 ORDER BY": f"SELECT * FROM {TABLE} ORDER BY hourly_rate DESC, id LIMIT 10",
    }


def _timed(samples: Samples, key: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    samples.setdefault(key, []).append(time.perf_counter() - started)
    return result


def _rotated(items: list[tuple[str, Callable[[], Any]]], round_index: int) -> list:
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


# --- 1, 2, 3: ingest ----------------------------------------------------------------------


def ingest_rounds(
    samples: Samples,
    csv_path: Path,
    rows: int,
    local: LakeServer,
    s3: LakeServer,
    scratch: Path,
    repeats: int,
) -> None:
    """Flight DoPut and HTTP multipart to local storage, DoPut to S3, and both baselines."""
    local_flight = flight.connect(local.flight_url)
    s3_flight = flight.connect(s3.flight_url)

    def put(client: flight.FlightClient, name: str) -> None:
        manifest = flight_put_csv(client, name, csv_path)
        check(manifest.get("row_count") == rows, f"DoPut {name}: {manifest.get('row_count')}")

    def post(name: str) -> None:
        manifest, _ = curl_ingest(local.http_url, name, csv_path)
        check(manifest.get("row_count") == rows, f"POST {name}: {manifest.get('row_count')}")

    def baseline(function: Callable[[Path, Path], int], out: Path) -> None:
        check(function(csv_path, out) == rows, f"{function.__name__} lost rows")
        out.unlink()

    try:
        for index in range(repeats + 1):  # round 0 warms every path up and is not kept
            contenders: list[tuple[str, Callable[[], Any]]] = [
                ("ingest.pyarrow", partial(baseline, peers.pyarrow_ingest, scratch / "pa.parquet")),
                ("ingest.pyarrow_newlines",
                 partial(baseline, peers.pyarrow_ingest_newlines, scratch / "pn.parquet")),
                ("ingest.duckdb", partial(baseline, peers.duckdb_copy, scratch / "dd.parquet")),
                ("ingest.flight_local", partial(put, local_flight, f"put_local_{index}")),
                ("ingest.http_local", partial(post, f"post_local_{index}")),
                ("ingest.flight_s3", partial(put, s3_flight, f"put_s3_{index}")),
            ]
            round_samples: Samples = {}
            for key, action in _rotated(contenders, index):
                _timed(round_samples, key, action)
            if index > 0:
                for key, values in round_samples.items():
                    samples.setdefault(key, []).extend(values)
    finally:
        local_flight.close()
        s3_flight.close()


# --- 4: query latency -----------------------------------------------------------------------


def floor_round_trip(client: flight.FlightClient) -> pa.Table:
    """GetFlightInfo + DoGet of a one-row table on the bare Flight server: the floor's RPCs."""
    info = client.get_flight_info(flight.FlightDescriptor.for_command(b"one"))
    return client.do_get(info.endpoints[0].ticket).read_all()


def latency_rounds(
    samples: Samples,
    rows: int,
    server: LakeServer,
    duck: peers.InProcessDuckDB,
    roapi: peers.Roapi,
    bare: peers.BareFlight,
    repeats: int,
) -> None:
    """Each query through every path, interleaved, ``repeats`` warm rounds (plus 2 warm-up).

    The floor of a query is two figures of the same round: the bare Flight server's
    GetFlightInfo + DoGet of one row, and in-process DuckDB on an in-memory table.
    """
    client = flight.connect(server.flight_url)
    bare_client = flight.connect(bare.url)
    adbc = peers.AdbcFlightSql(server.flight_url)
    http = httpx.Client(timeout=60)
    roapi_http = httpx.Client(timeout=60)
    try:
        for index in range(repeats + 2):
            for label, sql in queries(rows).items():
                contenders: list[tuple[str, Callable[[], Any]]] = [
                    ("duckdb", partial(duck.query, sql)),
                    ("duckdb_memory", partial(duck.query_memory, sql)),
                    ("bare_flight", partial(floor_round_trip, bare_client)),
                    ("flight", partial(flight_sql, client, sql)),
                    ("flight_info", partial(flight_sql_via_info, client, sql)),
                    ("http", partial(http_sql, http, server.http_url, sql)),
                    ("roapi_http", partial(roapi.http_sql, roapi_http, sql)),
                    ("roapi_flightsql", partial(roapi.flight_sql, sql)),
                    ("flightsql", partial(adbc.query, sql)),
                ]
                round_samples: Samples = {}
                for key, action in _rotated(contenders, index):
                    _timed(round_samples, f"query.{label}.{key}", action)
                if index >= 2:
                    for key, values in round_samples.items():
                        samples.setdefault(key, []).extend(values)
    finally:
        client.close()
        bare_client.close()
        adbc.close()
        http.close()
        roapi_http.close()


def flight_sql_call_times(figures: dict[str, float], server: LakeServer) -> None:
    """Median seconds the server spent in each Flight SQL call, from its own log.

    Every call logs one ``flight_request`` event naming its Flight SQL command; this is the
    time inside the handler, so the rest of a client's figure is transport and the driver.
    """
    seconds: dict[str, list[float]] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "flight_request" \
                and event.get("command") and event.get("outcome") == "ok":
            seconds.setdefault(event["command"], []).append(float(event["seconds"]))
    for command, values in seconds.items():
        figures[f"flightsql.server.{command}"] = statistics.median(values)


# --- 5: full scan ---------------------------------------------------------------------------


def scan_rounds(
    samples: Samples,
    rows: int,
    server: LakeServer,
    bare: peers.BareFlight,
    roapi: peers.Roapi,
    repeats: int,
) -> int:
    """Every row through DoGet, against the bare server and ROAPI; returns the Arrow bytes."""
    client = flight.connect(server.flight_url)
    bare_client = flight.connect(bare.url)
    adbc = peers.AdbcFlightSql(server.flight_url)
    arrow_bytes = 0

    def sql_scan() -> pa.Table:
        return flight_sql(client, f"SELECT * FROM {TABLE}")

    def dataset_scan() -> pa.Table:
        info = client.get_flight_info(flight.FlightDescriptor.for_path(TABLE))
        return pa.concat_tables(client.do_get(e.ticket).read_all() for e in info.endpoints)

    def bare_scan() -> pa.Table:
        return bare_client.do_get(flight.Ticket(b"all")).read_all()

    def roapi_scan() -> pa.Table:
        return roapi.flight_sql(f"SELECT * FROM {TABLE}")

    def adbc_scan() -> pa.Table:
        return adbc.query(f"SELECT * FROM {TABLE}")

    try:
        for index in range(repeats + 1):
            contenders = [
                ("scan.flight_sql", sql_scan),
                ("scan.flight_dataset", dataset_scan),
                ("scan.bare", bare_scan),
                ("scan.roapi_flightsql", roapi_scan),
                ("scan.flightsql", adbc_scan),
            ]
            for key, action in _rotated(contenders, index):
                started = time.perf_counter()
                table = action()
                seconds = time.perf_counter() - started
                check(table.num_rows == rows, f"{key} returned {table.num_rows} rows, not {rows}")
                if key == "scan.bare":
                    arrow_bytes = table.nbytes
                if index > 0:
                    samples.setdefault(key, []).append(seconds)
                del table
    finally:
        client.close()
        bare_client.close()
        adbc.close()
    return arrow_bytes


# --- 6: memory while ingesting a large CSV --------------------------------------------------


def memory_case(figures: dict[str, float], server: LakeServer, big_csv: Path, rows: int,
                where: str = "") -> None:
    """Idle RSS, then the peak while the big CSV goes in through DoPut, then through curl;
    ``where`` (``""`` for local storage, ``"s3."``) prefixes the figures' names."""
    assert server.memory is not None
    time.sleep(1.0)
    idle = figures[f"memory.{where}idle"] = server.memory.reset_peak()
    client = flight.connect(server.flight_url)
    try:
        started = time.perf_counter()
        manifest = flight_put_csv(client, "big_put", big_csv)
        figures[f"memory.{where}put_seconds"] = time.perf_counter() - started
    finally:
        client.close()
    check(manifest.get("row_count") == rows, f"big DoPut: row_count {manifest.get('row_count')}")
    figures[f"memory.{where}peak_put"] = server.memory.peak
    time.sleep(1.0)
    server.memory.reset_peak()
    manifest, seconds = curl_ingest(server.http_url, "big_post", big_csv)
    check(manifest.get("row_count") == rows, f"big POST: row_count {manifest.get('row_count')}")
    figures[f"memory.{where}post_seconds"] = seconds
    # Above the idle before the first upload: what stays after one upload counts too.
    figures[f"memory.{where}peak_post"] = max(server.memory.peak, idle)


def measured_put(server: LakeServer, name: str, path: Path, rows: int) -> tuple[float, int]:
    """One DoPut of ``path`` into a started server, after a second's rest: its seconds and
    the server's peak RSS above what it held just before (bytes)."""
    assert server.memory is not None
    time.sleep(1.0)
    idle = server.memory.reset_peak()
    client = flight.connect(server.flight_url)
    try:
        started = time.perf_counter()
        manifest = flight_put_csv(client, name, path)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    check(manifest.get("row_count") == rows, f"DoPut of {path.name}: row_count "
          f"{manifest.get('row_count')}")
    return seconds, server.memory.peak - idle


def wide_case(figures: dict[str, float], server: LakeServer, wide_csv: Path, rows: int,
              scratch: Path) -> None:
    """The wide CSV through DoPut (seconds, peak RSS above idle) beside in-process pyarrow
    on the same file."""
    seconds, peak = measured_put(server, "wide_put", wide_csv, rows)
    figures["wide.put_seconds"], figures["wide.peak_above_idle"] = seconds, peak
    out = scratch / "wide.parquet"
    started = time.perf_counter()
    check(peers.pyarrow_ingest(wide_csv, out) == rows, "pyarrow lost rows of the wide CSV")
    figures["wide.pyarrow_seconds"] = time.perf_counter() - started
    out.unlink()


# --- 7: concurrent clients ------------------------------------------------------------------


@dataclass
class Mixed:
    """Outcome of the concurrent mixed workload."""

    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    busy_refusals: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _is_busy(exc: Exception) -> bool:
    if isinstance(exc, flight.FlightUnavailableError):
        info = getattr(exc, "extra_info", b"") or b""
        try:
            return bool(json.loads(info).get("error") == "busy")
        except ValueError:
            return str(exc).startswith("busy")
    return False


def _one_operation(
    kind: str, name: str, client: flight.FlightClient, http: httpx.Client,
    server: LakeServer, small_csv: Path, small_rows: int, sql: str,
) -> None:  # fmt: skip
    if kind == "ingest.flight":
        manifest = flight_put_csv(client, name, small_csv)
    elif kind == "ingest.http":
        response = http.post(
            f"{server.http_url}/v1/ingest?name={name}",
            content=small_csv.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        if response.status_code == 503:
            raise _HttpBusy(response.headers.get("Retry-After", "1"))
        if response.status_code != 200:
            raise GateFailure(f"HTTP {response.status_code}: {response.text[:200]}")
        manifest = response.json()
    elif kind == "query.flight":
        flight_sql(client, sql)
        return
    else:
        http_sql(http, server.http_url, sql)
        return
    check(manifest["row_count"] == small_rows, f"{name}: row_count {manifest['row_count']}")


def _client_loop(
    number: int, server: LakeServer, small_csv: Path, small_rows: int, rows: int,
    deadline: float, outcome: Mixed,
) -> None:  # fmt: skip
    chooser = random.Random(number)
    client = flight.connect(server.flight_url)
    http = httpx.Client(timeout=120)
    sqls = list(queries(rows).values())
    operations = 0
    try:
        while time.perf_counter() < deadline:
            operations += 1
            front = ".flight" if chooser.random() < 0.5 else ".http"
            kind = ("ingest" if chooser.random() < 0.125 else "query") + front
            name, sql = f"mixed_{number}_{operations}", chooser.choice(sqls)
            started = time.perf_counter()
            try:
                while True:
                    try:
                        _one_operation(kind, name, client, http, server, small_csv, small_rows, sql)
                        break
                    except _HttpBusy as busy:
                        pause = min(float(busy.retry_after), 1.0)
                    except flight.FlightUnavailableError as exc:
                        if not _is_busy(exc):
                            raise
                        pause = 1.0
                    with outcome.lock:
                        outcome.busy_refusals += 1
                    time.sleep(pause)
            except Exception as exc:
                with outcome.lock:
                    outcome.error_count += 1
                    if len(outcome.errors) < 10:
                        outcome.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            with outcome.lock:
                outcome.latencies.setdefault(kind, []).append(time.perf_counter() - started)
    finally:
        client.close()
        http.close()


class _HttpBusy(Exception):
    def __init__(self, retry_after: str) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def concurrent_mix(
    server: LakeServer, small_csv: Path, small_rows: int, rows: int, clients: int,
    seconds: float,
) -> Mixed:  # fmt: skip
    """``clients`` threads, each mixing queries (7/8) and small ingests (1/8), Flight and HTTP.

    A busy refusal is retried (after ``Retry-After``, capped at a second, so the bounded run
    keeps its clients busy); any other failure is counted as an error and the client goes on.
    """
    outcome = Mixed()
    started = time.perf_counter()
    deadline = started + seconds
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(number, server, small_csv, small_rows, rows, deadline, outcome),
            name=f"mixed-{number}",
        )
        for number in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 300)
        if thread.is_alive():
            raise GateFailure(f"{thread.name} did not finish")
    outcome.seconds = time.perf_counter() - started
    return outcome
