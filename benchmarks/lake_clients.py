"""Plain clients of a running flight_lake, as a user would write them (no project code).

Raw ``pyarrow.flight`` for Flight, ``httpx`` and a real ``curl`` subprocess for HTTP, so the
gate and the benchmarks exercise the documented interface and nothing else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.flight as flight

from benchmarks.harness import GateFailure
from flight_lake_client.protocol import CHUNK_SCHEMA

CHUNK_BYTES = 1024 * 1024
CSV_CHUNK_SCHEMA = CHUNK_SCHEMA


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise GateFailure(f"expected JSON, got {body[:300]!r}") from exc


def flight_put_csv(
    client: flight.FlightClient, name: str, path: Path, mode: str = "create"
) -> dict[str, Any]:
    """Upload a CSV file through DoPut (schema ``chunk: binary``); return the manifest."""
    command = {"op": "ingest", "name": name, "format": "csv", "mode": mode}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode())
    writer, reader = client.do_put(descriptor, CSV_CHUNK_SCHEMA)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            writer.write_batch(
                pa.record_batch([pa.array([chunk], pa.binary())], schema=CSV_CHUNK_SCHEMA)
            )
    writer.done_writing()
    metadata = reader.read()
    writer.close()
    if metadata is None:
        raise GateFailure(f"DoPut of {name} returned no PutResult")
    return dict(_decode(metadata.to_pybytes()))


def flight_sql(client: flight.FlightClient, sql: str) -> pa.Table:
    """Run ``sql`` through DoGet with a ``{"sql": …}`` ticket (results here are small)."""
    ticket = flight.Ticket(json.dumps({"sql": sql}).encode())
    return client.do_get(ticket).read_all()


def flight_sql_via_info(client: flight.FlightClient, sql: str) -> pa.Table:
    """GetFlightInfo on the SQL command, then DoGet on each endpoint's ticket."""
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"sql": sql}).encode())
    info = client.get_flight_info(descriptor)
    tables = [client.do_get(endpoint.ticket).read_all() for endpoint in info.endpoints]
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def http_sql(http: httpx.Client, base_url: str, sql: str) -> Any:
    """``POST /v1/sql`` with the default (JSON) answer; return the parsed body."""
    response = http.post(f"{base_url}/v1/sql", json={"sql": sql})
    if response.status_code != 200:
        raise GateFailure(f"POST /v1/sql {sql!r} → {response.status_code}: {response.text[:500]}")
    return _decode(response.content)


def http_json(http: httpx.Client, url: str) -> Any:
    response = http.get(url)
    if response.status_code != 200:
        raise GateFailure(f"GET {url} → {response.status_code}: {response.text[:500]}")
    return _decode(response.content)


def curl_path() -> str:
    path = shutil.which("curl")
    if path is None:
        raise GateFailure("curl is not installed (the gate uploads with a real curl)")
    return path


def curl_ingest(base_url: str, name: str, path: Path, mode: str = "create") -> tuple[dict, float]:
    """``curl -F file=@path …/v1/ingest?name=…``; return the manifest and the seconds taken."""
    url = f"{base_url}/v1/ingest?name={name}&mode={mode}"
    with tempfile.NamedTemporaryFile(prefix="curl_body_", suffix=".json") as body:
        command = [
            curl_path(), "--silent", "--show-error", "--output", body.name,
            "--write-out", "%{http_code}", "-F", f"file=@{path};type=text/csv", url,
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        seconds = time.perf_counter() - started
        answer = Path(body.name).read_bytes()
    if result.returncode != 0:
        raise GateFailure(f"curl failed ({result.returncode}): {result.stderr.strip()}")
    if result.stdout.strip() != "200":
        raise GateFailure(f"curl ingest of {name} → HTTP {result.stdout}: {answer[:500]!r}")
    return dict(_decode(answer)), seconds
