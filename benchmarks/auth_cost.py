"""Workload 9: what authentication costs per call (issue 10).

Two fresh servers over the same lake folder, started and warmed alike: one open (no users),
one with users, called with a bearer token from ``POST /v1/auth/token`` (the token's HMAC
is verified on every call; scrypt runs once, at the login). Each call runs on both, back to
back, alternating which goes first; the cost is the median of the paired differences (with
auth minus without), which keeps a noisy moment of the machine out of it. The target (at
most 0.2 ms per call) is checked on the four queries pooled; a catalog listing (no query
work, ten pairs a round) shows the per-call overhead alone. Measuring starts once both
servers' query caches hold the table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyarrow.flight as flight

from benchmarks.harness import LakeServer, check, median
from benchmarks.workloads import TABLE, Samples, queries

USER, PASSWORD = "bench", "bench-password-1"
TARGET_SECONDS = 0.0002
PATHS = {"flight": "Flight", "http": "HTTP"}


WARM_UP_ROUNDS = 5


def open_server(lake: Path, workdir: Path) -> LakeServer:
    return LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(lake)}, workdir)


def secured_server(lake: Path, workdir: Path) -> LakeServer:
    """A server over ``lake`` whose secrets file holds one user (and a signing key).

    The user is an admin only so that the full health body shows the query cache; the
    calls measured need a reader and check the role like any other.
    """
    from flight_lake.auth.passwords import hash_password

    workdir.mkdir(parents=True, exist_ok=True)
    secrets = workdir / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'signing_key = "{"benchmark-signing-key-" * 3}"\n'
        "[[auth.users]]\n"
        f'name = "{USER}"\nrole = "admin"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    )
    return LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(lake),
                       "FLIGHT_LAKE_SECRETS": str(secrets)}, workdir)


def auth_rounds(samples: Samples, rows: int, open_server: LakeServer, secured: LakeServer,
                repeats: int) -> None:
    """Each call on both servers back to back (alternating which goes first), per path."""
    login = httpx.post(f"{secured.http_url}/v1/auth/token", auth=(USER, PASSWORD), timeout=60)
    check(login.status_code == 200, f"login to the secured server: {login.status_code}")
    token = login.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    open_flight = flight.connect(open_server.flight_url)
    secured_flight = flight.connect(secured.flight_url)
    http = httpx.Client(timeout=60)
    # Each side its own client with its headers set once, as Flight's options are.
    open_http, secured_http = httpx.Client(timeout=60), httpx.Client(timeout=60, headers=bearer)
    pairs = 0
    try:
        for index in range(repeats + WARM_UP_ROUNDS):
            if index == WARM_UP_ROUNDS:  # both serve the table from the same place
                _cache_settled(http, open_server.http_url, None)
                _cache_settled(http, secured.http_url, bearer)
            for label, sql in calls(rows).items():
                paths: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
                    "flight": (partial(_flight, open_flight, sql, None),
                               partial(_flight, secured_flight, sql, options)),
                    "http": (partial(_http, open_http, open_server.http_url, sql),
                             partial(_http, secured_http, secured.http_url, sql)),
                }
                # More pairs than rounds make the medians steady; the listing is cheap.
                for _ in range(CATALOG_PAIRS if sql is None else QUERY_PAIRS):
                    for path, (without, with_auth) in paths.items():
                        pairs += 1
                        order = [(without, "open"), (with_auth, "auth")]
                        if pairs % 2 == 0:
                            order.reverse()
                        timed = {kind: _seconds(action) for action, kind in order}
                        if index >= WARM_UP_ROUNDS:
                            for kind, seconds in timed.items():
                                samples.setdefault(f"auth.{label}.{path}.{kind}", []).append(
                                    seconds)
    finally:
        open_flight.close()
        secured_flight.close()
        for client in (http, open_http, secured_http):
            client.close()


def _seconds(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


CATALOG = "catalog listing"
CATALOG_PAIRS = 10
QUERY_PAIRS = 3
CACHE_WAIT_SECONDS = 120.0


def _cache_settled(http: httpx.Client, base_url: str, headers: dict[str, str] | None) -> None:
    """Wait until the query cache holds the table (or is off), so neither server still
    reads Parquet while the other reads memory."""
    deadline = time.monotonic() + CACHE_WAIT_SECONDS
    while time.monotonic() < deadline:
        health = http.get(f"{base_url}/health", headers=headers).json()
        cache = health.get("cache", {}).get("duckdb", {})
        if not cache.get("max_bytes") or TABLE in cache.get("datasets", {}):
            return
        time.sleep(0.5)


def calls(rows: int) -> dict[str, str | None]:
    """The four queries, and ``None``: list the catalog (no query work)."""
    return {**queries(rows), CATALOG: None}


def _differences(samples: Samples, label: str, path: str) -> list[float]:
    return [with_auth - without for with_auth, without in zip(
        samples[f"auth.{label}.{path}.auth"], samples[f"auth.{label}.{path}.open"], strict=True)]


def costs(samples: Samples, rows: int) -> dict[tuple[str, str], float]:
    """Median of the paired differences (auth minus open), per (call, path), in seconds."""
    return {(label, path): median(_differences(samples, label, path))
            for label in calls(rows) for path in PATHS}


def query_cost(samples: Samples, rows: int, path: str) -> float:
    """The median paired difference over every query call of ``path`` (all four pooled)."""
    return median([d for label in queries(rows) for d in _differences(samples, label, path)])


def targets(samples: Samples, rows: int) -> list[tuple[str, str, bool]]:
    found = costs(samples, rows)
    rows_out = []
    for path, name in PATHS.items():
        pooled = query_cost(samples, rows, path)
        rows_out.append((
            f"(9) authentication ≤ 0.2 ms p50 per call, {name} queries",
            f"{pooled * 1000:+.3f} ms (catalog listing {found[(CATALOG, path)] * 1000:+.3f})",
            pooled <= TARGET_SECONDS))
    return rows_out


def section(samples: Samples, rows: int) -> list[str]:
    lines = [
        "## 9. Authentication cost per call (milliseconds, p50)",
        "",
        "The same warm calls on two fresh servers over the same lake folder: one open, one "
        "with users (a reader calling with a bearer token; its HMAC is verified on every "
        "call), back to back, alternating which goes first. The cost is the median of the "
        "paired differences; the catalog listing has no query work, so it shows the per-call "
        "overhead alone. Flight: a query is DoGet with a `{sql}` ticket (1 call), the listing "
        "DoAction `catalog.list`; HTTP: `POST /v1/sql` (JSON) and `GET /v1/catalog`.",
        "",
        "| call | path | open p50 | with auth p50 | cost (paired) |",
        "|---|---|---|---|---|",
    ]
    found = costs(samples, rows)
    for label in calls(rows):
        for path, name in PATHS.items():
            opened = median(samples[f"auth.{label}.{path}.open"])
            secured = median(samples[f"auth.{label}.{path}.auth"])
            lines.append(f"| {label} | {name} | {opened * 1000:.2f} | {secured * 1000:.2f} | "
                         f"{found[(label, path)] * 1000:+.3f} |")
    for path, name in PATHS.items():
        lines.append(f"| the four queries, pooled | {name} | | | "
                     f"**{query_cost(samples, rows, path) * 1000:+.3f}** |")
    return [*lines, ""]


def _flight(client: flight.FlightClient, sql: str | None,
            options: flight.FlightCallOptions | None) -> Any:
    if sql is None:
        return list(client.do_action(flight.Action("catalog.list", b"{}"), options))
    ticket = flight.Ticket(json.dumps({"sql": sql}).encode())
    return client.do_get(ticket, options).read_all()


def _http(http: httpx.Client, base_url: str, sql: str | None) -> Any:
    if sql is None:
        response = http.get(f"{base_url}/v1/catalog")
    else:
        response = http.post(f"{base_url}/v1/sql", json={"sql": sql})
    check(response.status_code == 200, f"{response.request.url.path}: {response.status_code}")
    return response.content
