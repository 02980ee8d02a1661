"""``flight-lake iceberg sync``: bring every dataset's Iceberg table up to its manifests.

Runs against the storage directly (no server needed, safe while servers run): each manifest
version not mirrored yet becomes one Iceberg snapshot, and ``version-hint.text`` points at
the newest (docs/adr/0008-iceberg-tables.md). Servers do the same after each commit; this is
for a lake written before the tables existed, or metadata that was removed or left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flight_lake.cli.user import EXIT_CODES, EXIT_OTHER
from flight_lake.errors import LakeError
from flight_lake.logs import configure_logging
from flight_lake.settings import load_settings

app = typer.Typer(help="The Iceberg tables mirroring the datasets (_iceberg/lake/<name>).",
                  no_args_is_help=True)


@app.command()
def sync(
    names: Annotated[list[str] | None, typer.Argument(
        help="Datasets to sync (default: every dataset).", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML config file (default: conf/flight_lake.toml if present).")] = None,
    secrets: Annotated[Path | None, typer.Option(
        help="Secrets TOML with the S3 keys (default: conf/secrets.toml).")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Storage root: a folder or s3://bucket/prefix.")] = None,
) -> None:
    """Mirror every committed version not yet in the Iceberg tables, oldest first."""
    from flight_lake.catalog import Catalog
    from flight_lake.iceberg.tables import IcebergTables
    from flight_lake.storage import Storage

    overrides: dict[str, Any] = {"storage": {"uri": storage}} if storage else {}
    try:
        settings = load_settings(config, secrets, **overrides)
        configure_logging(settings.log.level, settings.log.format)  # on stderr
        store = Storage.from_settings(settings.storage)
        catalog = Catalog(store)
        tables = IcebergTables(store, catalog, settings.storage,
                               settings.iceberg.snapshots_kept)
        wanted = names or [manifest.name for manifest in catalog.list()]
        for name in wanted:
            catalog.get(name)  # NotFound for an unknown name
            version = tables.sync(name)
            shown = f"version {version}" if version else "no table (see the log)"
            typer.echo(f"{name}: {shown}")
    except LakeError as exc:
        typer.echo(f"flight-lake: {exc.detail}", err=True)
        raise typer.Exit(EXIT_CODES.get(exc.code, EXIT_OTHER)) from exc
