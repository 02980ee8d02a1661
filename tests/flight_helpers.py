"""Small helpers for talking raw pyarrow.flight to a test server (no client library)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

CHUNK_SCHEMA = pa.schema([("chunk", pa.binary())])


def put_csv(client: flight.FlightClient, name: str, data: bytes | Iterable[bytes],
            mode: str = "create", chunk_size: int = 1 << 20) -> dict[str, Any]:
    """Upload CSV bytes as DESIGN.md says: `chunk: binary` batches, one PutResult back."""
    command = {"op": "ingest", "name": name, "format": "csv", "mode": mode}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    writer, metadata = client.do_put(descriptor, CHUNK_SCHEMA)
    chunks = ([data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
              if isinstance(data, bytes) else data)
    with writer:
        for chunk in chunks:
            writer.write_batch(pa.record_batch([pa.array([chunk], pa.binary())], CHUNK_SCHEMA))
        writer.done_writing()
        answer = metadata.read()
    assert answer is not None
    return json.loads(answer.to_pybytes())


def put_table(client: flight.FlightClient, name: str, table: pa.Table,
              mode: str = "create") -> dict[str, Any]:
    command = {"op": "ingest", "name": name, "format": "arrow", "mode": mode}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    writer, metadata = client.do_put(descriptor, table.schema)
    with writer:
        writer.write_table(table, max_chunksize=1000)
        writer.done_writing()
        answer = metadata.read()
    assert answer is not None
    return json.loads(answer.to_pybytes())


def sql(client: flight.FlightClient, query: str) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"sql": query})))
    tables = [client.do_get(endpoint.ticket).read_all() for endpoint in info.endpoints]
    return pa.concat_tables(tables)


def action(client: flight.FlightClient, name: str, body: dict | None = None) -> Any:
    results = list(client.do_action(flight.Action(name, json.dumps(body or {}).encode())))
    assert len(results) == 1
    return json.loads(results[0].body.to_pybytes())


def error_body(exc: flight.FlightError) -> dict[str, Any]:
    assert exc.extra_info, f"no extra_info on {exc!r}"
    return json.loads(exc.extra_info)
