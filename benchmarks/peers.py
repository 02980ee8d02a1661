"""The baselines and the peer the runner measures flight_lake against.

- in-process: ``pyarrow.csv.read_csv`` + ``pyarrow.parquet.write_table``; DuckDB ``COPY … TO
  parquet``; DuckDB over the same Parquet objects;
- ``BareFlight``: a bare pyarrow Flight server streaming the table from memory (subprocess);
- ``Roapi``: the ``roapi`` binary over the same Parquet, its HTTP ``/api/sql`` and FlightSQL
  (through the ADBC Flight SQL driver);
- ``AdbcFlightSql``: the ADBC Flight SQL driver's DB-API, the client SQL tools use, pointed
  at ROAPI or at flight_lake alike.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.harness import REPO, GateFailure, free_port

ROW_GROUP_ROWS = 131_072  # flight_lake's default ingest.row_group_rows


def pyarrow_ingest(csv_path: Path, out: Path, newlines_in_values: bool = False) -> int:
    """The in-process baseline: read the CSV with pyarrow (default parse options, or
    ``newlines_in_values``), write zstd Parquet in flight_lake's row groups; rows."""
    options = pacsv.ParseOptions(newlines_in_values=newlines_in_values)
    table = pacsv.read_csv(csv_path, parse_options=options)
    pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return table.num_rows


def pyarrow_ingest_newlines(csv_path: Path, out: Path) -> int:
    """The same baseline parsing with ``newlines_in_values=True`` (quote-aware chunks)."""
    return pyarrow_ingest(csv_path, out, newlines_in_values=True)


def duckdb_copy(csv_path: Path, out: Path) -> int:
    """The other in-process baseline: DuckDB ``COPY (read_csv) TO parquet``; rows."""
    with duckdb.connect() as connection:
        connection.execute(
            f"COPY (SELECT * FROM read_csv('{csv_path}')) TO '{out}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        row = connection.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()
    return int(row[0]) if row else 0


class InProcessDuckDB:
    """DuckDB in this process over the same Parquet objects the server wrote, and over an
    in-memory table of them (the engine half of the latency floor)."""

    def __init__(self, table: str, parquet_files: Sequence[Path]) -> None:
        self.connection = duckdb.connect()
        self.table = table
        files = ", ".join(f"'{path}'" for path in parquet_files)
        self.connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}])")
        self.connection.execute(f"CREATE TABLE {table}_memory AS SELECT * FROM {table}")

    def query(self, sql: str) -> pa.Table:
        return self.connection.execute(sql).to_arrow_table()

    def query_memory(self, sql: str) -> pa.Table:
        """``sql`` over the in-memory table instead of the Parquet view."""
        return self.connection.execute(
            sql.replace(f"FROM {self.table}", f"FROM {self.table}_memory")).to_arrow_table()

    def close(self) -> None:
        self.connection.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise GateFailure(f"{what} exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise GateFailure(f"{what} did not listen on port {port} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class Roapi:
    """``roapi`` over one Parquet table, HTTP and FlightSQL on free loopback ports."""

    def __init__(self, table: str, parquet: Path, log: Path) -> None:
        binary = shutil.which("roapi")
        if binary is None:
            raise GateFailure("the roapi binary is not installed (pip install roapi)")
        self.http_port, self.flight_sql_port, pg_port = free_port(), free_port(), free_port()
        command = [
            binary, "--table", f"{table}={parquet}",
            "--addr-http", f"127.0.0.1:{self.http_port}",
            "--addr-flight-sql", f"127.0.0.1:{self.flight_sql_port}",
            "--addr-postgres", f"127.0.0.1:{pg_port}",
        ]  # fmt: skip
        self.log: IO[bytes] = log.open("ab")
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.adbc = AdbcFlightSql(f"grpc://127.0.0.1:{self.flight_sql_port}")
        try:
            _wait_for_port(self.http_port, self.process, "roapi", 60)
            _wait_for_port(self.flight_sql_port, self.process, "roapi", 60)
        except BaseException:
            self.close()
            raise

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def http_sql(self, http: httpx.Client, sql: str) -> Any:
        response = http.post(f"{self.http_url}/api/sql", content=sql.encode())
        if response.status_code != 200:
            raise GateFailure(f"roapi /api/sql → {response.status_code}: {response.text[:300]}")
        return response.json()

    def flight_sql(self, sql: str) -> pa.Table:
        """Through the ADBC Flight SQL driver (GetFlightInfo, then DoGet), one connection."""
        return self.adbc.query(sql)

    def close(self) -> None:
        self.adbc.close()
        _stop(self.process)
        self.process = None
        self.log.close()


class BareFlight:
    """The bare pyarrow Flight server (``benchmarks.bare_flight``) in a subprocess."""

    def __init__(self, parquet: Path, log: Path) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "benchmarks.bare_flight",
            "--parquet", str(parquet), "--port", str(self.port),
        ]  # fmt: skip
        self.log: IO[bytes] = log.open("ab")
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.log
        )
        try:
            _wait_for_port(self.port, self.process, "the bare Flight server", 60)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def close(self) -> None:
        _stop(self.process)
        self.process = None
        self.log.close()


class AdbcFlightSql:
    """One ADBC Flight SQL connection, opened on first use: what SQL tools send.

    The driver prepares every statement (CreatePreparedStatement), then GetFlightInfo,
    DoGet and ClosePreparedStatement.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._connection: Any = None

    def query(self, sql: str) -> pa.Table:
        if self._connection is None:
            import adbc_driver_flightsql.dbapi as flightsql

            self._connection = flightsql.connect(self.uri, autocommit=True)
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
