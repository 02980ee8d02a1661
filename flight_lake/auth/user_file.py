"""``[[auth.users]]`` in the secrets file: add, list and remove entries, keeping the rest.

tomlkit edits the file in place, so the S3 keys and comments around the users stay as they
were. The file is rewritten atomically with mode 0600. Adding the first user also adds
``auth.signing_key`` (random, 48 bytes) so tokens survive restarts and replicas sharing
the file accept each other's tokens.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from flight_lake.errors import Conflict, InvalidInput, NotFound

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ROLES = ("reader", "writer", "admin")


def list_users(path: Path) -> list[dict[str, str]]:
    """``name``, ``role`` and ``kind`` (password or api-key) of each user; never a hash."""
    return [
        {"name": str(entry["name"]), "role": str(entry["role"]),
         "kind": "api-key" if str(entry["password_hash"]).startswith("sha256$") else "password"}
        for entry in _users(_read(path))
    ]


def add_user(path: Path, name: str, role: str, password_hash: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InvalidInput("user names are 1 to 64 letters, digits, or _ . @ -")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    document = _read(path)
    auth = _auth_table(document)
    users = auth.get("users")
    if users is None:
        users = tomlkit.aot()
        auth.append("users", users)
    if any(str(entry["name"]) == name for entry in users):
        raise Conflict(f"user {name} exists; `flight-lake users remove {name}` first")
    entry = tomlkit.table()
    entry.update({"name": name, "role": role, "password_hash": password_hash})
    users.append(entry)
    if "signing_key" not in auth:
        auth["signing_key"] = secrets.token_urlsafe(48)
    _write(path, document)


def remove_user(path: Path, name: str) -> None:
    document = _read(path)
    users = _users(document)
    kept = [entry for entry in users if str(entry["name"]) != name]
    if len(kept) == len(users):
        raise NotFound(f"no user {name} in {path}")
    auth = _auth_table(document)
    replacement = tomlkit.aot()
    for entry in kept:
        replacement.append(entry)
    auth["users"] = replacement
    _write(path, document)


def _read(path: Path) -> tomlkit.TOMLDocument:
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc


def _auth_table(document: tomlkit.TOMLDocument) -> Any:
    if "auth" not in document:
        document.append("auth", tomlkit.table())
    auth = document["auth"]
    if not isinstance(auth, Table):
        raise InvalidInput("auth in the secrets file is not a table")
    return auth


def _users(document: tomlkit.TOMLDocument) -> list[Any]:
    users = document.get("auth", {}).get("users", [])
    if not isinstance(users, AoT | list):
        raise InvalidInput("auth.users in the secrets file is not a list of tables")
    return list(users)


def _write(path: Path, document: tomlkit.TOMLDocument) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(tomlkit.dumps(document))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
