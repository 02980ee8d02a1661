"""The ``flight-lake`` command: ``serve`` here, the user commands in ``cli/user.py``, the
``users`` commands (accounts in the secrets file) in ``cli/accounts.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flight_lake.cli import accounts, iceberg_sync, sample, user
from flight_lake.errors import LakeError
from flight_lake.logs import configure_logging
from flight_lake.settings import load_settings


def _flag_type(option: typer.core.TyperOption, ctx: Any) -> str | None:
    """Flags take no value, so ``--help`` shows no ``<bool>`` placeholder after them (typer
    labels every option with its type, flags included)."""
    return None if option.is_flag else _option_type(option, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[assignment,method-assign]

app = typer.Typer(
    name="flight-lake",
    help="A small lakehouse over Apache Arrow Flight: CSV in, Parquet out, SQL through DuckDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


ConfigOption = Annotated[
    Path | None, typer.Option(help="TOML config file (default: conf/flight_lake.toml if present).")
]
SecretsOption = Annotated[
    Path | None,
    typer.Option(help="Secrets TOML: S3 keys, users, signing key (default: conf/secrets.toml)."),
]
StorageOption = Annotated[
    str | None, typer.Option(help="Storage root: a folder or s3://bucket/prefix.")
]
HostOption = Annotated[str | None, typer.Option(help="Address Flight and HTTP bind to.")]
PortOption = Annotated[int | None, typer.Option(help="Port (0: any free port).")]


@app.command()
def serve(
    config: ConfigOption = None,
    secrets: SecretsOption = None,
    storage: StorageOption = None,
    host: HostOption = None,
    flight_port: PortOption = None,
    http_port: PortOption = None,
    http: Annotated[bool, typer.Option(
        "--http/--no-http", help="Serve HTTP too (--no-http: Flight only).")] = True,
    create_bucket: Annotated[bool, typer.Option(
        "--create-bucket", help="Create the S3 bucket if it is missing (for development).")
    ] = False,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth",
        help="Serve without users on a non-loopback address (anyone reaching the port may "
             "read, write and delete).")] = False,
) -> None:
    """Start the server (Flight on 127.0.0.1:8815, HTTP on 127.0.0.1:3110, data in ./lake)."""
    overrides: dict[str, dict[str, Any]] = {}

    def override(section: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    override("storage", "uri", storage)
    override("flight", "host", host)
    override("http", "host", host)
    override("flight", "port", flight_port)
    override("http", "port", http_port)
    if not http:
        override("http", "enabled", False)
    if create_bucket:
        override("storage", "create_bucket", True)
    try:
        settings = load_settings(config, secrets, **overrides)
    except LakeError as exc:
        typer.echo(f"flight-lake: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log.level, settings.log.format)

    from flight_lake.serve import run

    try:
        run(settings, insecure_no_auth=insecure_no_auth)
    except LakeError as exc:  # raised while starting: storage, query engine settings
        typer.echo(f"flight-lake: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"flight-lake: cannot start: {exc}", err=True)
        raise typer.Exit(1) from exc


user.register(app)
app.add_typer(accounts.users, name="users")
app.add_typer(sample.app, name="sample")
app.add_typer(iceberg_sync.app, name="iceberg")


def main() -> None:  # pragma: no cover - console entry for `python -m flight_lake`
    sys.exit(app())
