"""Replica visibility lag: how long until every replica answers with another one's commit.

``python -m benchmarks.replica_lag [--commits 100] [--replicas 3] [--storage s3|folder]``
starts moto's S3 server (or uses a temporary folder) and ``--replicas`` ``flight-lake
serve`` processes over it with the default ``catalog.refresh_seconds``, creates one
dataset, then commits ``--commits`` one-row appends, each through the next replica in
turn. After each commit it checks the committing replica answers with it at once
(read-your-writes, through SQL) and polls every other replica with ``SELECT count(*)``
every 10 ms until the new row shows: that wait, from the commit's answer, is one lag
sample. The servers' own logs give the same lag from the manifest's commit
(``catalog_committed``) to each other replica's view refresh (``query_view_refreshed``).
A random pause (up to one refresh interval) before each commit keeps the commits from
lining up with the replicas' change checks. The p50/p99/max lag go into
``docs/BENCHMARKS.md`` (the "Replicas" section, kept by ``benchmarks.run``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks import harness
from flight_lake.settings import CatalogSettings
from flight_lake_client import FlightLakeClient, connect
from flight_lake_client.errors import NotFound

REPORT = harness.REPO / "docs" / "BENCHMARKS.md"
START, END = "<!-- replicas -->", "<!-- /replicas -->"
POLL_SECONDS = 0.01
GIVE_UP_SECONDS = 60.0


def count(lake: FlightLakeClient) -> int:
    return int(lake.sql("SELECT count(*) AS n FROM lag").column("n")[0].as_py())


def _knows(lake: FlightLakeClient) -> bool:
    try:
        return count(lake) >= 1
    except NotFound:
        return False


def _events(server: harness.LakeServer, name: str) -> dict[int, float]:
    """The time (POSIX seconds, from the server's log) of each version's ``name`` event for
    the ``lag`` dataset."""
    found: dict[int, float] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name and event.get("dataset") == "lag":
            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            found.setdefault(int(event["version"]), stamp.timestamp())
    return found


def server_side(servers: list[harness.LakeServer]) -> list[float]:
    """From the logs: each commit's ``catalog_committed`` on its replica to
    ``query_view_refreshed`` of that version on every other one (one clock: one machine)."""
    committed = [_events(server, "catalog_committed") for server in servers]
    refreshed = [_events(server, "query_view_refreshed") for server in servers]
    lags: list[float] = []
    for writer, versions in enumerate(committed):
        for version, at in versions.items():
            if version == 1:
                continue  # the dataset's creation, before the clock started
            lags.extend(views[version] - at for index, views in enumerate(refreshed)
                        if index != writer and version in views)
    return lags


def measure(servers: list[harness.LakeServer], commits: int, seed: int) -> dict[str, Any]:
    refresh = CatalogSettings().refresh_seconds
    pause = random.Random(seed)
    clients = [connect(server.flight_url) for server in servers]
    try:
        clients[0].ingest(pa.table({"id": [0]}), name="lag")
        rows = 1
        for client in clients:  # every replica knows the dataset before the clock starts
            while not _knows(client):
                time.sleep(POLL_SECONDS)
        lags: list[float] = []
        stale_own = 0
        started = time.perf_counter()
        for commit in range(commits):
            time.sleep(pause.uniform(0, refresh))
            writer = commit % len(clients)
            clients[writer].ingest(pa.table({"id": [rows]}), name="lag", mode="append")
            committed = time.perf_counter()
            rows += 1
            if count(clients[writer]) != rows:
                stale_own += 1
            waiting = {index for index in range(len(clients)) if index != writer}
            while waiting:
                for index in sorted(waiting):
                    if count(clients[index]) >= rows:
                        lags.append(time.perf_counter() - committed)
                        waiting.discard(index)
                if time.perf_counter() - committed > GIVE_UP_SECONDS:
                    raise harness.GateFailure(f"commit {commit + 1} not seen within "
                                              f"{GIVE_UP_SECONDS:.0f} s")
                if waiting:
                    time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    inside = server_side(servers)
    return {"server_p50": harness.quantile(inside, 0.5),
            "server_p99": harness.quantile(inside, 0.99), "server_max": max(inside),
            "server_samples": len(inside), "refresh_seconds": refresh, "commits": commits,
            "replicas": len(servers),
            "samples": len(lags), "stale_own": stale_own,
            "p50": harness.quantile(lags, 0.5), "p99": harness.quantile(lags, 0.99),
            "max": max(lags), "min": min(lags), "seconds": seconds}


def render(result: dict[str, Any], storage: str, command: str) -> str:
    machine = harness.machine()
    lines = [
        START,
        "## Replicas: visibility lag (issue 13)",
        "",
        f"`{command}` — {result['replicas']} `flight-lake serve` processes over one "
        f"{'moto S3 bucket' if storage == 's3' else 'folder'} on one machine "
        f"({machine['cpu']}; {machine['load']} at the end), `catalog.refresh_seconds` = "
        f"{result['refresh_seconds']:g} (the default). {result['commits']} one-row appends, "
        "each through the next replica in turn; the lag is the time from a commit's answer "
        "until `SELECT count(*)` on another replica counts the new row (polled every "
        f"{POLL_SECONDS * 1000:.0f} ms), {result['samples']} samples.",
        "",
        "| lag, seconds | p50 | p99 | max |",
        "|---|---|---|---|",
        f"| seen by a client (commit's answer → another replica's `count(*)`) | "
        f"{result['p50']:.3f} | {result['p99']:.3f} | {result['max']:.3f} |",
        f"| inside the servers (`catalog_committed` → another replica's "
        f"`query_view_refreshed`, from their logs, {result['server_samples']} samples) | "
        f"{result['server_p50']:.3f} | {result['server_p99']:.3f} | "
        f"{result['server_max']:.3f} |",
        "",
        f"- **read-your-writes**: the committing replica answered with its own commit at "
        f"once {result['commits'] - result['stale_own']} times out of {result['commits']}.",
        "- **why these figures**: a replica looks every `refresh_seconds` (one small read of "
        "`_catalog/pulse`), so a commit waits on average half an interval and at most one "
        "interval, plus one listing of the manifests, one manifest read and the view's "
        "refresh (docs/SCALE_OUT.md). The servers' figure starts when the manifest is "
        "written; the client's starts at the commit's answer, which comes only after the "
        "committing replica's own view refresh and Iceberg mirror, so it is the smaller.",
        f"- run took {result['seconds']:.0f} s (with the random pauses between commits).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_report(section: str, path: Path = REPORT) -> None:
    harness.write_section(section, START, END, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--storage", choices=("s3", "folder"), default="s3")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with harness.workdir() as folder, harness.MotoS3() as moto:
        if args.storage == "s3":
            moto.create_bucket("replicas")
            env = moto.storage_env("replicas")
        else:
            env = {"FLIGHT_LAKE_STORAGE__URI": str(folder / "lake")}
        env["FLIGHT_LAKE_HTTP__ENABLED"] = "true"  # the harness waits on /health
        servers = [harness.LakeServer(env=env, workdir=folder / f"replica-{index}")
                   for index in range(args.replicas)]
        try:
            for server in servers:
                server.start()
            result = measure(servers, args.commits, args.seed)
        finally:
            for server in servers:
                server.stop()
    command = "python -m benchmarks.replica_lag" + "".join(
        f" {arg}" for arg in sys.argv[1:] if arg != "--no-write")
    section = render(result, args.storage, command)
    print(section)
    if not args.no_write:
        write_report(section)


if __name__ == "__main__":
    main()
