"""The role each Flight SQL command and action needs, added to the one role table.

Operation names are ``flightsql.<message or action name>`` (the Flight server asks for
them in ``flight/server.py``). Everything reads except ingest and updates; updates are
refused later anyway (the lake is read-only through SQL), but a reader hears about the
role first. Session and prepared-statement actions only read.
"""

from __future__ import annotations

from flight_lake.auth import register_operations
from flight_lake.flightsql import flight_session_pb2 as session_pb2
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2

WRITES = {"CommandStatementIngest", "CommandStatementUpdate", "CommandPreparedStatementUpdate"}
ACTIONS = ("CreatePreparedStatement", "ClosePreparedStatement", "CancelFlightInfo",
           "CancelQuery", "SetSessionOptions", "GetSessionOptions", "CloseSession",
           "BeginTransaction", "EndTransaction", "BeginSavepoint", "EndSavepoint",
           "CreatePreparedSubstraitPlan")


def operation(name: str) -> str:
    return f"flightsql.{name}"


def _register() -> None:
    names = [*sql_pb2.DESCRIPTOR.message_types_by_name,
             *session_pb2.DESCRIPTOR.message_types_by_name]
    commands = [name for name in names if name.startswith(("Command", "Ticket"))]
    register_operations({operation(name): "writer" if name in WRITES else "reader"
                         for name in commands})
    register_operations({operation(name): "reader" for name in ACTIONS})


_register()
