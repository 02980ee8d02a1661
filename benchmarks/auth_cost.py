"""Workload 8: what authentication costs per call (issue 10).

Two fresh servers over the same lake folder, started and warmed alike: one open (no users),
one with users, called with a bearer token from ``POST /v1/auth/token`` (the token's HMAC
is verified on every call; scrypt runs once, at the login). Each round runs every query on
both, back to back in a rotating order; the cost is the median of the paired differences
(with auth minus without), which keeps a noisy moment of the machine out of it. Besides
the four queries, a catalog listing (no query work) shows the per-call overhead alone.
The target is at most 0.2 ms per call.
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
from benchmarks.workloads import Samples, queries

USER, PASSWORD = "bench", "bench-password-1"
TARGET_SECONDS = 0.0002
PATHS = {"flight": "Flight", "http": "HTTP"}


WARM_UP_ROUNDS = 5


def open_server(lake: Path, workdir: Path) -> LakeServer:
    return LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(lake)}, workdir)


def secured_server(lake: Path, workdir: Path) -> LakeServer:
    """A server over ``lake`` whose secrets file holds one reader (and a signing key)."""
    from flight_lake.auth.passwords import hash_password

    workdir.mkdir(parents=True, exist_ok=True)
    secrets = workdir / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'signing_key = "{"benchmark-signing-key-" * 3}"\n'
        "[[auth.users]]\n"
        f'name = "{USER}"\nrole = "reader"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    )
    return LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(lake),
                       "FLIGHT_LAKE_SECRETS": str(secrets)}, workdir)


def auth_rounds(samples: Samples, rows: int, open_server: LakeServer, secured: LakeServer,
                repeats: int) -> None:
    """Each query on both servers through Flight and HTTP, interleaved (plus 2 warm-up)."""
    login = httpx.post(f"{secured.http_url}/v1/auth/token", auth=(USER, PASSWORD), timeout=60)
    check(login.status_code == 200, f"login to the secured server: {login.status_code}")
    token = login.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    open_flight = flight.connect(open_server.flight_url)
    secured_flight = flight.connect(secured.flight_url)
    http = httpx.Client(timeout=60)
    try:
        for index in range(repeats + WARM_UP_ROUNDS):
            for label, sql in calls(rows).items():
                contenders: list[tuple[str, Callable[[], Any]]] = [
                    ("flight.open", partial(_flight, open_flight, sql, None)),
                    ("flight.auth", partial(_flight, secured_flight, sql, options)),
                    ("http.open", partial(_http, http, open_server.http_url, sql, None)),
                    ("http.auth", partial(_http, http, secured.http_url, sql, bearer)),
                ]
                shift = index % len(contenders)
                for key, action in contenders[shift:] + contenders[:shift]:
                    started = time.perf_counter()
                    action()
                    seconds = time.perf_counter() - started
                    if index >= WARM_UP_ROUNDS:
                        samples.setdefault(f"auth.{label}.{key}", []).append(seconds)
    finally:
        open_flight.close()
        secured_flight.close()
        http.close()


CATALOG = "catalog listing"


def calls(rows: int) -> dict[str, str | None]:
    """The four queries, and ``None``: list the catalog (no query work)."""
    return {**queries(rows), CATALOG: None}


def costs(samples: Samples, rows: int) -> dict[tuple[str, str], float]:
    """Median of the paired differences (auth minus open), per (call, path), in seconds."""
    return {
        (label, path): median([with_auth - without for with_auth, without in zip(
            samples[f"auth.{label}.{path}.auth"], samples[f"auth.{label}.{path}.open"],
            strict=True)])
        for label in calls(rows) for path in PATHS
    }


def targets(samples: Samples, rows: int) -> list[tuple[str, str, bool]]:
    found = costs(samples, rows)
    rows_out = []
    for path, name in PATHS.items():
        per_query = [found[(label, path)] for label in queries(rows)]
        typical = median(per_query)
        rows_out.append((
            f"(8) authentication ≤ 0.2 ms p50 per call, {name} (median over the 4 queries)",
            f"{typical * 1000:+.3f} ms (queries {min(per_query) * 1000:+.2f} to "
            f"{max(per_query) * 1000:+.2f}; catalog {found[(CATALOG, path)] * 1000:+.3f})",
            typical <= TARGET_SECONDS))
    return rows_out


def section(samples: Samples, rows: int) -> list[str]:
    lines = [
        "## 8. Authentication cost per call (milliseconds, p50)",
        "",
        "The same warm calls on two fresh servers over the same lake folder: one open, one "
        "with users (a reader calling with a bearer token; its HMAC is verified on every "
        "call), back to back in each round. The cost is the median of the paired "
        "differences; the catalog listing has no query work, so it shows the per-call "
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
    return [*lines, ""]


def _flight(client: flight.FlightClient, sql: str | None,
            options: flight.FlightCallOptions | None) -> Any:
    if sql is None:
        return list(client.do_action(flight.Action("catalog.list", b"{}"), options))
    ticket = flight.Ticket(json.dumps({"sql": sql}).encode())
    return client.do_get(ticket, options).read_all()


def _http(http: httpx.Client, base_url: str, sql: str | None,
          headers: dict[str, str] | None) -> Any:
    if sql is None:
        response = http.get(f"{base_url}/v1/catalog", headers=headers)
    else:
        response = http.post(f"{base_url}/v1/sql", json={"sql": sql}, headers=headers)
    check(response.status_code == 200, f"{response.request.url.path}: {response.status_code}")
    return response.content
