"""Flight authentication: Basic credentials at the handshake, a bearer token on every call.

The handshake is header-based, as pyarrow's ``authenticate_basic_token``, the ADBC Flight
SQL driver (``username``/``password``) and JDBC expect: the client calls Handshake with
``authorization: Basic …``; the answer's headers carry ``authorization: Bearer <token>``,
which every later call sends. ``BearerFactory`` refuses any other call without valid
credentials (``UNAUTHENTICATED``) before a handler runs; handlers that need more than a
reader ask ``require(context, operation)``, which checks the role table
(``UNAUTHORIZED`` naming the role).

pyarrow shows a middleware neither the peer's address nor the call's body: failures
refused here are logged without an address, and failed handshakes are counted per user
name (docs/adr/0007-stateless-tokens.md).
"""

from __future__ import annotations

import pyarrow.flight as flight

from flight_lake.auth import Authenticator, Identity
from flight_lake.errors import LakeError, Unauthenticated
from flight_lake.flight.status import to_flight_error

MIDDLEWARE_KEY = "auth"


class HeaderHandshake(flight.ServerAuthHandler):
    """Lets Handshake through to ``BearerFactory``, which did the real work on its headers."""

    def authenticate(self, outgoing: flight.ServerAuthSender,
                     incoming: flight.ServerAuthReader) -> None:
        pass

    def is_valid(self, token: bytes) -> str:
        return ""


class BearerFactory(flight.ServerMiddlewareFactory):
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> Bearer:
        values = headers.get("authorization") or [""]
        handshake = info.method == flight.FlightMethod.HANDSHAKE
        operation = "login" if handshake else info.method.name.lower()
        try:
            identity = self.authenticator.identify(values[0] or None, address=None,
                                                   operation=operation)
            token = self.authenticator.issue(identity)[0] if handshake else None
        except LakeError as exc:
            raise to_flight_error(exc) from exc
        return Bearer(identity, token)


class Bearer(flight.ServerMiddleware):
    """The identity of one call; a handshake also answers with a fresh token."""

    def __init__(self, identity: Identity, token: str | None) -> None:
        self.identity = identity
        self.token = token

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


def identity_of(context: flight.ServerCallContext) -> Identity | None:
    """The caller's identity; ``None`` when the server runs open (no users)."""
    bearer = context.get_middleware(MIDDLEWARE_KEY)
    return bearer.identity if isinstance(bearer, Bearer) else None


def require(context: flight.ServerCallContext, authenticator: Authenticator | None,
            operation: str) -> None:
    """Raise ``PermissionDenied`` unless the caller's role allows ``operation``."""
    if authenticator is None:
        return
    identity = identity_of(context)
    if identity is None:  # cannot happen behind BearerFactory; fail closed all the same
        raise Unauthenticated("credentials required")
    authenticator.authorize(identity, operation, address=context.peer())


def permits(context: flight.ServerCallContext, authenticator: Authenticator | None,
            operation: str) -> bool:
    if authenticator is None:
        return True
    identity = identity_of(context)
    return identity is not None and authenticator.permits(identity, operation)
