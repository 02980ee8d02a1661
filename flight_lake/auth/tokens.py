"""Stateless bearer tokens: a JWT (HS256) carrying the user, the role and the expiry.

Any server holding the signing key verifies a token without asking anyone, so replicas
sharing the secrets file accept each other's tokens. The header's ``kid`` names the key
(a digest, not the key), so ``previous_signing_keys`` keep tokens valid while a new key
rolls out. The format is plain RFC 7519 JWS compact (any JWT library reads it), written
with the standard library's ``hmac``: verifying costs ~10 µs where a JWT library's
general path costs several times that on every call (docs/adr/0007-stateless-tokens.md).
Only HS256 is accepted; the signature is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from flight_lake.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "flight_lake"
LEEWAY_SECONDS = 5  # clock skew between replicas


@dataclass(frozen=True)
class Claims:
    user: str
    role: str
    expires_at: int


def key_id(key: str) -> str:
    return hashlib.sha256(b"flight_lake key id:" + key.encode()).hexdigest()[:16]


class TokenSigner:
    """Mints tokens with the current key; verifies with the current or a previous one."""

    def __init__(self, key: str, previous: list[str], ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._kid = key_id(key)
        self._keys = {key_id(k): k.encode() for k in [*previous, key]}
        # The encoded header of each key's tokens: a token's first part is looked up, not
        # parsed, which also pins the algorithm (a forged header matches no entry).
        self._by_header = {_header(kid): secret for kid, secret in self._keys.items()}

    def mint(self, user: str, role: str) -> tuple[str, int]:
        """A token for ``user`` with ``role`` and its expiry (Unix seconds)."""
        now = int(time.time())
        expires_at = now + self.ttl_seconds
        claims = {"sub": user, "role": role, "iat": now, "exp": expires_at, "iss": ISSUER}
        signing_input = f"{_header(self._kid)}.{_encode(claims)}"
        signature = _b64(_sign(self._keys[self._kid], signing_input))
        return f"{signing_input}.{signature}", expires_at

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; ``Unauthenticated`` for anything else."""
        if token.count(".") != 2:
            raise Unauthenticated("malformed token")
        signing_input, _, signature = token.rpartition(".")
        header_part, _, claims_part = signing_input.partition(".")
        try:
            key = self._by_header.get(header_part)
            if key is None:
                raise Unauthenticated("token signed with an unknown key")
            if not hmac.compare_digest(_sign(key, signing_input), _unb64(signature)):
                raise Unauthenticated("invalid token signature")
            claims = _decode(claims_part)
        except (ValueError, UnicodeError, binascii.Error, AttributeError) as exc:
            raise Unauthenticated("malformed token") from exc
        user, role, expires_at = claims.get("sub"), claims.get("role"), claims.get("exp")
        if (claims.get("iss") != ISSUER or not isinstance(user, str)
                or not isinstance(role, str) or not isinstance(expires_at, int)):
            raise Unauthenticated("invalid token claims")
        if expires_at + LEEWAY_SECONDS < time.time():
            raise Unauthenticated("token expired; log in again")
        return Claims(user, role, expires_at)


def _header(kid: str) -> str:
    return _encode({"alg": ALGORITHM, "typ": "JWT", "kid": kid})


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _encode(part: dict[str, Any]) -> str:
    return _b64(json.dumps(part, separators=(",", ":")).encode())


def _decode(part: str) -> dict[str, Any]:
    value = json.loads(_unb64(part))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
