"""The one table of which operation needs which role.

Roles are ordered: ``reader`` < ``writer`` < ``admin``; a role may do everything a lower
one may. Front ends name the operation a request performs and ask
``Authenticator.authorize``; nothing else decides access.

Another front end (Flight SQL) adds its operations once, at import time, with
``register_operations({"flightsql.ingest": "writer", …})``; an operation missing from the
table needs ``admin`` (fail closed).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Role(enum.IntEnum):
    READER = 1
    WRITER = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


OPERATIONS: dict[str, Role] = {
    "health": Role.READER,  # the Flight health action (HTTP /health needs no login at all)
    "query": Role.READER,  # SQL: GetFlightInfo + DoGet, POST /v1/sql
    "catalog.read": Role.READER,  # ListFlights, catalog.list/get, GET /v1/catalog…
    "dataset.read": Role.READER,  # GetFlightInfo on a path + DoGet of its objects
    "ingest": Role.WRITER,  # DoPut, POST /v1/ingest
    "catalog.register": Role.WRITER,  # catalog.register, POST /v1/catalog/register
    "storage.read": Role.ADMIN,  # GET /v1/storage/… (every object, manifests included)
    "health.detail": Role.ADMIN,  # the full health body (storage, caches, counts)
}


def register_operations(operations: Mapping[str, Role | str]) -> None:
    """Add a front end's operations; re-registering one with another role is an error."""
    for name, role in operations.items():
        wanted = role if isinstance(role, Role) else Role.named(role)
        known = OPERATIONS.get(name)
        if known is not None and known != wanted:
            raise ValueError(f"operation {name!r} already needs {known.label}")
        OPERATIONS[name] = wanted


def required_role(operation: str) -> Role:
    """The least role that may perform ``operation``; unknown operations need admin."""
    return OPERATIONS.get(operation, Role.ADMIN)
