"""Credentials → an ``Identity``, and whether that identity may perform an operation.

Both front ends come here and only translate the answer: Flight in ``flight/bearer.py``,
HTTP in ``http/guard.py``. Accepted credentials:

- ``Basic base64(user:password)``, with or without base64 padding (the Go Flight SQL
  driver omits it). Checks scrypt, so front ends trade it for a token once.
- ``Bearer <token>``: a token from ``issue`` (any replica with the key accepts it).
- ``Bearer flk_…``: a service account's API key, checked against its stored hash.

Every failure and every refusal is logged with user, address and operation, never with
the secret. Messages never say whether a user name exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

import structlog

from flight_lake.auth import passwords
from flight_lake.auth.limiter import LoginLimiter
from flight_lake.auth.roles import Role, required_role
from flight_lake.auth.tokens import TokenSigner
from flight_lake.errors import InvalidInput, PermissionDenied, Unauthenticated
from flight_lake.settings import AuthSettings

log = structlog.get_logger()

BAD_LOGIN = "wrong user name or password"


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._users: dict[str, tuple[Role, str]] = {}
        self._api_keys: dict[str, str] = {}  # sha256 hex → user name
        for entry in settings.users:
            stored = entry.password_hash.get_secret_value()
            if not passwords.is_hash(stored):
                raise InvalidInput(f"auth.users {entry.name!r}: password_hash is not a hash "
                                   "(set it with flight-lake users add)")
            self._users[entry.name] = (Role.named(entry.role), stored)
            if stored.startswith("sha256$"):
                self._api_keys[stored.removeprefix("sha256$")] = entry.name
        if settings.signing_key is not None:
            key = settings.signing_key.get_secret_value()
        else:
            # Tokens then die with the process and no replica accepts them.
            key = secrets.token_urlsafe(32)
            log.warning("auth_signing_key_missing",
                        hint="set auth.signing_key in the secrets file to share tokens")
        previous = [k.get_secret_value() for k in settings.previous_signing_keys]
        self.signer = TokenSigner(key, previous, settings.token_ttl_seconds)
        self.limiter = LoginLimiter(settings.login_failure_limit, settings.login_lockout_seconds)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator | None:
        """The authenticator, or ``None`` when no users are configured (open mode)."""
        return cls(settings) if settings.users else None

    # -- credentials -----------------------------------------------------------------

    def identify(self, authorization: str | None, *, address: str | None,
                 operation: str) -> Identity:
        """The identity behind an ``Authorization`` header value (Basic or Bearer)."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return self.bearer(credentials, address=address, operation=operation)
        if scheme.lower() == "basic" and credentials:
            return self.basic(credentials, address=address, operation=operation)
        self._failed(None, address, operation, "no credentials")
        raise Unauthenticated("credentials required: HTTP Basic (user and password) or a "
                              "bearer token")

    def basic(self, encoded: str, *, address: str | None, operation: str) -> Identity:
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            user, sep, password = base64.b64decode(padded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            sep = ""
        if not sep:
            self._failed(None, address, operation, "malformed basic credentials")
            raise Unauthenticated("malformed Basic credentials: base64 of user:password")
        return self.login(user, password, address=address, operation=operation)

    def login(self, user: str, password: str, *, address: str | None,
              operation: str) -> Identity:
        """Check a user name and password (or API key); count failures per address."""
        counted = address or f"user:{user}"  # Flight's handshake does not show the peer
        self.limiter.check(counted)
        role, stored = self._users.get(user, (None, passwords.dummy_hash()))
        matches = passwords.verify(password, stored)
        if role is None or not matches:
            self.limiter.failed(counted)
            self._failed(user, address, operation, "wrong password or unknown user")
            raise Unauthenticated(BAD_LOGIN)
        self.limiter.succeeded(counted)
        return Identity(user, role)

    def bearer(self, token: str, *, address: str | None, operation: str) -> Identity:
        if token.startswith(passwords.API_KEY_PREFIX):
            return self._api_key(token, address=address, operation=operation)
        try:
            claims = self.signer.verify(token)
        except Unauthenticated as exc:
            self._failed(None, address, operation, exc.detail)
            raise
        current = self._users.get(claims.user)
        if current is None:  # removed since the token was issued
            self._failed(claims.user, address, operation, "token of a removed user")
            raise Unauthenticated("invalid token")
        try:
            claimed = Role.named(claims.role)
        except KeyError:
            self._failed(claims.user, address, operation, "token with an unknown role")
            raise Unauthenticated("invalid token") from None
        # A role lowered since the token was issued takes effect at once.
        return Identity(claims.user, min(claimed, current[0]))

    def _api_key(self, key: str, *, address: str | None, operation: str) -> Identity:
        counted = address or "api-key"
        self.limiter.check(counted)
        user = self._api_keys.get(hashlib.sha256(key.encode()).hexdigest())
        if user is None:
            self.limiter.failed(counted)
            self._failed(None, address, operation, "unknown API key")
            raise Unauthenticated("invalid API key")
        return Identity(user, self._users[user][0])

    def issue(self, identity: Identity) -> tuple[str, int]:
        """A signed token for ``identity`` and its expiry (Unix seconds)."""
        return self.signer.mint(identity.user, identity.role.label)

    # -- roles -----------------------------------------------------------------------

    def permits(self, identity: Identity, operation: str) -> bool:
        return identity.role >= required_role(operation)

    def authorize(self, identity: Identity, operation: str, *, address: str | None) -> None:
        """Raise ``PermissionDenied`` naming the missing role, and log the refusal."""
        needed = required_role(operation)
        if identity.role >= needed:
            return
        log.warning("auth_refused", user=identity.user, role=identity.role.label,
                    address=address, operation=operation, needs=needed.label)
        raise PermissionDenied(f"{operation} needs the {needed.label} role; "
                               f"{identity.user} is a {identity.role.label}")

    @staticmethod
    def _failed(user: str | None, address: str | None, operation: str, reason: str) -> None:
        log.warning("auth_failed", user=user, address=address, operation=operation,
                    reason=reason)
