"""``flight-lake sample``: make sample data to try the lake with, no extra installs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flight_lake import sample_data

app = typer.Typer(
    help="Make sample data to try flight_lake with (deterministic: same rows, same bytes).",
    no_args_is_help=True,
)


@app.command()
def workers(
    rows: Annotated[int, typer.Option(min=0, help="Rows to write.")] = sample_data.DEFAULT_ROWS,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="CSV file to write (its folder is created).")] = Path("workers.csv"),
    seed: Annotated[int, typer.Option(help="Another seed gives other rows.")] = (
        sample_data.DEFAULT_SEED),
) -> None:
    """Write the workers CSV: 13 columns of people, places, rates, dates and notes."""
    made = sample_data.write_csv(out, rows, seed=seed)
    typer.echo(f"{made.path}: {made.rows:,} rows, {made.bytes:,} bytes, "
               f"sha256 {made.sha256[:16]}… ({made.seconds:.1f} s)")
