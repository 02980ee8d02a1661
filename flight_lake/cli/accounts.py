"""``flight-lake users add|list|remove``: the users in the secrets file.

Passwords are read from a hidden prompt (asked twice) or, for scripts, from stdin with
``--password-stdin``, never from the command line. ``--api-key`` makes a service account
with a random key, printed once. The server reads the users when it starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

from flight_lake.auth import passwords, user_file
from flight_lake.cli.user import EXIT_CODES, EXIT_OTHER
from flight_lake.errors import LakeError
from flight_lake.settings import DEFAULT_SECRETS_FILE

MIN_PASSWORD_LENGTH = 8

users = typer.Typer(help="Manage the users in the secrets file (read when the server starts).",
                    no_args_is_help=True)

SecretsFile = Annotated[Path | None, typer.Option(
    "--secrets", help="Secrets TOML (default: $FLIGHT_LAKE_SECRETS or conf/secrets.toml).",
    show_default=False)]


@users.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name.", show_default=False)],
    role: Annotated[Literal["reader", "writer", "admin"], typer.Option(
        help="reader: queries and reads; writer: + ingest and register; admin: + storage "
             "routes and the full health body.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from stdin (one line).")] = False,
    api_key: Annotated[bool, typer.Option(
        "--api-key", help="A service account: print a random API key instead of asking "
                          "for a password.")] = False,
    secrets: SecretsFile = None,
) -> None:
    """Add a user (asks for the password twice, without echoing it)."""
    path = _secrets_path(secrets)
    key = None
    if api_key:
        key = passwords.new_api_key()
        stored = passwords.hash_api_key(key)
    else:
        stored = passwords.hash_password(_new_password(password_stdin))
    with _errors():
        user_file.add_user(path, name, role, stored)
    typer.echo(f"added {role} {name} to {path}; restart the server to apply", err=True)
    if key is not None:
        typer.echo(key)  # the only time it is shown


@users.command("list")
def list_(secrets: SecretsFile = None) -> None:
    """List the users: name, role and whether they log in with a password or an API key."""
    with _errors():
        entries = user_file.list_users(_secrets_path(secrets))
    for entry in entries:
        typer.echo(f"{entry['name']}\t{entry['role']}\t{entry['kind']}")


@users.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="User name.", show_default=False)],
    secrets: SecretsFile = None,
) -> None:
    """Remove a user; their tokens stop working when the server restarts."""
    path = _secrets_path(secrets)
    with _errors():
        user_file.remove_user(path, name)
    typer.echo(f"removed {name} from {path}; restart the server to apply", err=True)


def _secrets_path(explicit: Path | None) -> Path:
    return explicit or Path(os.environ.get("FLIGHT_LAKE_SECRETS") or DEFAULT_SECRETS_FILE)


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        typer.echo(f"flight-lake: the password needs at least {MIN_PASSWORD_LENGTH} characters",
                   err=True)
        raise typer.Exit(3)
    return password


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except LakeError as exc:
        typer.echo(f"flight-lake: {exc.detail}", err=True)
        raise typer.Exit(EXIT_CODES.get(exc.code, EXIT_OTHER)) from exc
