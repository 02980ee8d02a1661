"""A bare pyarrow Flight server that streams one table from memory: the scan baseline.

    python -m benchmarks.bare_flight --parquet FILE [--port N]

Every DoGet streams the whole table as it sits in memory — the upper bound a Flight server
on this machine can reach, with no SQL, storage or catalog in the way — except the ticket
``one``, a one-row table: with GetFlightInfo (any descriptor, one endpoint with that
ticket) it is the round trip a query of one row cannot beat, the Flight half of the
latency floor. It prints its port on stdout once listening.
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

ONE_ROW = pa.table({"n": pa.array([1], pa.int64())})


class BareFlightServer(flight.FlightServerBase):
    def __init__(self, location: str, table_path: str) -> None:
        self.table = pq.read_table(table_path)  # before listening, so no client sees it empty
        super().__init__(location)

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(b"one", [])
        return flight.FlightInfo(ONE_ROW.schema, descriptor, [endpoint], 1, -1)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        if ticket.ticket == b"one":
            return flight.RecordBatchStream(ONE_ROW)
        return flight.RecordBatchStream(self.table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_flight")
    parser.add_argument("--parquet", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = BareFlightServer(f"grpc://127.0.0.1:{args.port}", args.parquet)
    print(server.port, flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
