"""Password and API-key hashes, and their constant-time checks.

Passwords are hashed with scrypt (memory-hard, in the standard library):
``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (salt and hash base64). API keys are long random
strings made here (``flk_…``, 256 bits); a slow KDF adds nothing to that much entropy, so
they are stored as ``sha256$<hex>``. Either kind sits in ``password_hash`` and is checked
by ``verify``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14  # 16 MiB of memory per hash with r=8: OWASP's scrypt floor
SCRYPT_R = 8
SCRYPT_P = 1
HASH_BYTES = 32
API_KEY_PREFIX = "flk_"


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` in the ``scrypt$…`` format."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(digest)))


def new_api_key() -> str:
    """A fresh API key for a service account: shown once, stored only as its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    if not key.startswith(API_KEY_PREFIX) or len(key) < 40:
        raise ValueError("not an API key made by flight-lake")
    return "sha256$" + hashlib.sha256(key.encode()).hexdigest()


def verify(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches ``stored``; compares digests in constant time."""
    scheme, _, rest = stored.partition("$")
    try:
        if scheme == "scrypt":
            n, r, p, salt, expected = rest.split("$")
            digest = _scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p))
            return hmac.compare_digest(digest, base64.b64decode(expected))
        if scheme == "sha256":
            digest_hex = hashlib.sha256(secret.encode()).hexdigest()
            return hmac.compare_digest(digest_hex, rest)
    except ValueError:
        return False
    return False


def is_hash(stored: str) -> bool:
    """Whether ``stored`` looks like one of our hashes (never a plain password)."""
    return stored.startswith(("scrypt$", "sha256$")) and len(stored) > 40


@functools.cache
def dummy_hash() -> str:
    """Checked for unknown user names, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
