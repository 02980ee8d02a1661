"""Flight SQL on the wire: commands are protobuf messages packed in ``google.protobuf.Any``.

A Flight SQL client puts ``Any{type_url, value}`` in descriptor commands, tickets and
action bodies; the type URL names the message
(``type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery``). JSON commands
of flight_lake's own dialect start with ``{`` and never parse as such an ``Any``, so one
port serves both dialects.
"""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from flight_lake.errors import InvalidInput
from flight_lake.flightsql import flight_sql_pb2 as sql_pb2

TYPE_PREFIX = "type.googleapis.com/"
PACKAGE = sql_pb2.DESCRIPTOR.package  # "arrow.flight.protocol.sql"
_SQL_PREFIX = f"{TYPE_PREFIX}{PACKAGE}."

# Every Flight SQL message this server understands, by its full protobuf name.
_MESSAGES: dict[str, type[Message]] = {
    descriptor.full_name: getattr(sql_pb2, name)
    for name, descriptor in sql_pb2.DESCRIPTOR.message_types_by_name.items()
}


def unpack(raw: bytes) -> Message | None:
    """The Flight SQL message in ``raw``, or None when ``raw`` is not Flight SQL at all.

    Bytes that are a Flight SQL ``Any`` naming a message this server does not know, or
    whose payload does not parse, are ``InvalidInput``.
    """
    if not raw or raw[:1] != b"\n":  # Any's field 1 (type_url) comes first
        return None
    try:
        wrapper = any_pb2.Any.FromString(raw)
    except DecodeError:
        return None
    if not wrapper.type_url.startswith(_SQL_PREFIX):
        return None
    name = wrapper.type_url[len(TYPE_PREFIX):]
    message_class = _MESSAGES.get(name)
    if message_class is None:
        raise InvalidInput(f"unsupported Flight SQL message {name}")
    try:
        return message_class.FromString(wrapper.value)
    except DecodeError as exc:
        raise InvalidInput(f"malformed Flight SQL message {name}: {exc}") from exc


def unpack_as(raw: bytes, message_class: type[Message]) -> Message:
    """``raw`` as the Flight SQL message ``message_class``; anything else is InvalidInput."""
    message = unpack(raw)
    if not isinstance(message, message_class):
        raise InvalidInput(
            f"expected a Flight SQL {message_class.DESCRIPTOR.name} packed in Any")
    return message


def pack(message: Message) -> bytes:
    """``message`` packed in ``Any`` and serialized: commands, tickets, action results."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()
