"""Arrow Flight SQL on the lake's Flight port: ADBC, JDBC (DBeaver), polars and pandas.

The Flight server recognises Flight SQL messages (protobuf ``Any`` with an
``arrow.flight.protocol.sql`` type URL) and hands them to :class:`FlightSql`; its own JSON
commands are untouched. Modules: ``wire`` (Any packing), ``service`` (the calls served),
``statements`` (prepared statements and parameters), ``metadata`` (catalog tree),
``sql_info`` (GetSqlInfo), ``call_watch`` (cancel a read whose client went away),
``grpc_status`` (the SQL clients' status codes); the protobuf classes are generated
from the ``.proto`` files beside them (``codegen``). docs/FLIGHT.md lists the calls and
what each maps onto.
"""

from __future__ import annotations

from flight_lake.flightsql.service import FlightSql

__all__ = ["FlightSql"]
