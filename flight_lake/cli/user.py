"""The user-facing ``flight-lake`` subcommands: ingest, sql, datasets, manifest, health.

They talk to a running server through ``flight_lake_client`` (``--server``, or the
``FLIGHT_LAKE_SERVER`` environment variable), print results on stdout, and report a failure
as one line on stderr with an exit code per error kind (``EXIT_CODES``), so scripts can
branch on it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from flight_lake_client import DEFAULT_SERVER, FlightLakeClient, Manifest, connect
from flight_lake_client import errors as client_errors
from flight_lake_client.client import DEFAULT_STREAMS
from flight_lake_client.json_rows import JsonRows
from flight_lake_client.protocol import Mode

EXIT_OK = 0
EXIT_OTHER = 1  # an error with no code of its own (internal error, local I/O)
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_CODES: dict[str, int] = {
    "invalid_input": 3,
    "not_found": 4,
    "conflict": 5,
    "too_large": 6,
    "busy": 7,
    "unavailable": 8,
    "permission_denied": 9,
    "timeout": 10,
    "storage_error": 11,
    "unauthenticated": 12,
}
"""Exit code per error code (docs/USER_GUIDE.md has the same table)."""

Server = Annotated[str, typer.Option(
    "--server", envvar="FLIGHT_LAKE_SERVER", help="Flight address of the flight_lake server.")]
OutputFormat = Literal["table", "csv", "json", "parquet"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the user commands to the ``flight-lake`` app (``serve`` lives in the package root)."""
    app.callback()(connection)
    app.command("ingest")(ingest)
    app.command("sql")(sql)
    app.command("datasets")(datasets)
    app.command("manifest")(manifest)
    app.command("health")(health)


# -- connection options (before the command: flight-lake --user alice sql …) ---------


@dataclass(frozen=True)
class Connection:
    user: str | None = None
    token: str | None = None
    tls_root_certs: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def connection(
    user: Annotated[str | None, typer.Option(
        "--user", "-u", envvar="FLIGHT_LAKE_USER", show_default=False,
        help="Log in as this user; the password comes from $FLIGHT_LAKE_PASSWORD or a "
             "prompt.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="FLIGHT_LAKE_TOKEN", show_default=False,
        help="A bearer token or API key instead of a user and password.")] = None,
    tls_root_certs: Annotated[Path | None, typer.Option(
        "--tls-root-certs", envvar="FLIGHT_LAKE_TLS_ROOT_CERTS", show_default=False,
        help="PEM file of the CA that signed the server's certificate (grpc+tls://).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", envvar="FLIGHT_LAKE_TLS_CERT", show_default=False,
        help="PEM client certificate, for servers that require mutual TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", envvar="FLIGHT_LAKE_TLS_KEY", show_default=False,
        help="PEM private key of --tls-cert.")] = None,
) -> None:
    """A small lakehouse over Apache Arrow Flight: CSV in, Parquet out, SQL through DuckDB."""
    _given[:] = [Connection(user, token, tls_root_certs, tls_cert, tls_key)]


_given: list[Connection] = []  # what this invocation's options said (one per process)


def _client_options() -> dict[str, Any]:
    """``connect`` arguments from the options before the command (or their variables)."""
    options = _given[0] if _given else Connection()
    arguments: dict[str, Any] = {}
    if options.tls_root_certs is not None:
        arguments["tls_root_certs"] = options.tls_root_certs.read_bytes()
    if options.tls_cert is not None and options.tls_key is not None:
        arguments["cert_chain"] = options.tls_cert.read_bytes()
        arguments["private_key"] = options.tls_key.read_bytes()
    if options.token:
        arguments["token"] = options.token
    elif options.user:
        arguments["user"] = options.user
        arguments["password"] = os.environ.get("FLIGHT_LAKE_PASSWORD") or typer.prompt(
            f"Password for {options.user}", hide_input=True, err=True)
    return arguments


# -- commands ------------------------------------------------------------------------


def ingest(
    files: Annotated[list[Path], typer.Argument(
        help="File(s) to upload: CSV (plain, .gz, .zst), Parquet or Arrow IPC ('-' reads "
             "stdin). Several files become one version, all or none.", show_default=False)],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="Dataset name (default: the file name, made an identifier; "
                             "needed with several files).", show_default=False)] = None,
    mode: Annotated[Mode, typer.Option(
        help="create a dataset, replace its contents, or append rows.")] = "create",
    partition_by: Annotated[list[str] | None, typer.Option(
        "--partition-by", metavar="COLUMN",
        help="Partition by this column (Hive-style column=value folders); repeat or "
             "separate with commas. Left out on append: the dataset's.",
        show_default=False)] = None,
    sort_by: Annotated[list[str] | None, typer.Option(
        "--sort-by", metavar="COLUMN",
        help="Sort the rows by this column; repeat or separate with commas. Left out on "
             "append: the dataset's.", show_default=False)] = None,
    streams: Annotated[int, typer.Option(
        min=1, help="Files uploaded at once (with several files).")] = DEFAULT_STREAMS,
    as_json: Annotated[bool, typer.Option(
        "--json/--no-json", help="Print the manifest as JSON.")] = False,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Upload a file as a dataset, with a progress bar, and print what changed. Several
    files are uploaded in parallel and committed once, as one version: if one fails
    (a schema mismatch names the file and line), nothing is committed. Ctrl-C cancels the
    upload: nothing is committed."""
    if len(files) > 1:
        _ingest_many(files, name, mode, streams, as_json, server, partition_by, sort_by)
        return
    file = files[0]
    stdin = str(file) == "-"
    if not stdin and not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    dataset = name or _name_from(file)
    total = None if stdin else file.stat().st_size
    with _client(server) as lake, _opened(file) as handle:
        counter = _LineCounter(handle)
        with _upload_progress(dataset, total) as update:
            result = _interruptible(dataset, counter.stop, lambda: lake.ingest_csv(
                counter, name=dataset, mode=mode, size=total, partition_by=partition_by,
                sort_by=sort_by, progress=lambda sent, _: update(sent, counter.lines)))
    _print_result(result, as_json)


def _ingest_many(files: list[Path], name: str | None, mode: Mode, streams: int,
                 as_json: bool, server: str, partition_by: list[str] | None,
                 sort_by: list[str] | None) -> None:
    """Several files, one transaction, one commit (``ingest_csv`` with a list of paths)."""
    for file in files:
        if str(file) == "-":
            raise typer.BadParameter("'-' (stdin) goes alone, not among several files",
                                     param_hint="FILES")
        if not file.is_file():
            raise typer.BadParameter(f"no such file: {file}", param_hint="FILES")
    if name is None:
        raise typer.BadParameter("several files need --name (the one dataset they make)",
                                 param_hint="--name")
    total = sum(file.stat().st_size for file in files)
    with _client(server) as lake, _upload_progress(name, total, files=len(files)) as update:
        result = _interruptible(name, lambda: False, lambda: lake.ingest_csv(
            files, name=name, mode=mode, max_streams=streams, partition_by=partition_by,
            sort_by=sort_by, progress=lambda sent, _: update(sent, 0)))
    _print_result(result, as_json)


def _print_result(result: Manifest, as_json: bool) -> None:
    if as_json:
        out.print_json(data=result.to_dict())
        return
    out.print(_ingest_summary(result))


def _ingest_summary(result: Manifest) -> str:
    """One line saying what the upload changed: a new version, what it replaced, or nothing."""
    if result.unchanged:
        return (f"{result.name}: unchanged: version {result.version} already holds this "
                f"content ({result.row_count:,} rows, {_size(result.size_bytes)}); "
                "nothing was written")
    line = (f"{result.name}: {result.row_count:,} rows, version {result.version}, "
            f"{len(result.objects)} object(s), {_size(result.size_bytes)}")
    if result.partition_by:
        line += f", partitioned by {', '.join(result.partition_by)}"
    if result.sort_by:
        line += f", sorted by {', '.join(result.sort_by)}"
    if result.replaced is not None:
        old = result.replaced
        line += (f"; replaced version {old.version} ({old.row_count:,} rows, "
                 f"{_size(old.size_bytes)})")
    return line


def _interruptible(dataset: str, stop: Callable[[], bool],
                   upload: Callable[[], Manifest]) -> Manifest:
    """Run ``upload`` in a worker thread so Ctrl-C is handled at once, even while a call
    blocks in gRPC. On Ctrl-C the process ends at once (exit 130): its connection drops,
    which the server takes as a cancelled upload and commits nothing (``stop()`` stops
    reading and says whether the whole file had been read already; with several files,
    their transaction is never committed and expires)."""
    outcome: list[Manifest] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(upload())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, name="ingest-upload", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        if stop():
            message = (f"interrupted after the whole file was sent: the server may still "
                       f"commit it; check with `flight-lake manifest {dataset}`")
        else:
            message = f"ingest cancelled: nothing was committed ({dataset} is unchanged)"
        err.show_cursor(True)
        err.print(f"flight-lake: {message}", markup=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # not a clean close: that would send the cut-off file
    if failure:
        raise failure[0]
    return outcome[0]


def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement.",
                                         show_default=False)],
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="table (readable), csv, json (array of rows) or parquet.")
    ] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the result to this file instead of stdout.",
        show_default=False)] = None,
    max_rows: Annotated[int, typer.Option(
        min=1, help="Rows shown by --format table; the rest are counted.")] = 100,
    server: Server = DEFAULT_SERVER,
) -> None:
    """Run a SQL query over the datasets and print the result."""
    if output_format == "parquet" and output is None and sys.stdout.isatty():
        raise typer.BadParameter("Parquet is binary: give --output FILE or redirect stdout",
                                 param_hint="--format")
    with _client(server) as lake:
        reader = lake.sql_reader(query)
        with _sink(output, binary=output_format in ("csv", "json", "parquet")) as sink:
            if output_format == "table":
                _write_table(reader, sink, max_rows)
            elif output_format == "csv":
                _write_csv(reader, sink)
            elif output_format == "json":
                _write_json(reader, sink)
                if output is None and sys.stdout.isatty():  # the prompt on its own line
                    sink.write(b"\n")
            else:
                _write_parquet(reader, sink)


def datasets(
    output_format: Annotated[Literal["table", "json"], typer.Option(
        "--format", "-f", help="table, or json (a list of manifests).")] = "table",
    server: Server = DEFAULT_SERVER,
) -> None:
    """List the datasets in the catalog."""
    with _client(server) as lake:
        manifests = lake.datasets()
    if output_format == "json":
        out.print_json(data=[m.to_dict() for m in manifests])
        return
    table = Table("name", "version", "rows", "size", "objects", "updated (UTC)",
                  caption=f"{len(manifests)} dataset(s)")
    for m in manifests:
        table.add_row(m.name, str(m.version), f"{m.row_count:,}", _size(m.size_bytes),
                      str(len(m.objects)), f"{m.updated_at:%Y-%m-%d %H:%M:%S}")
    out.print(table)


def manifest(
    name: Annotated[str, typer.Argument(help="Dataset name.", show_default=False)],
    server: Server = DEFAULT_SERVER,
) -> None:
    """Print a dataset's current manifest as JSON."""
    with _client(server) as lake:
        result: Manifest = lake.manifest(name)
    out.print_json(data=result.to_dict())


def health(server: Server = DEFAULT_SERVER) -> None:
    """Print the server's health as JSON; exit 8 (unavailable) if it cannot be reached."""
    with _client(server) as lake:
        status = lake.health()
    out.print_json(data=status)


# -- errors and connections ----------------------------------------------------------


@contextlib.contextmanager
def _client(server: str) -> Iterator[FlightLakeClient]:
    """A connection for one command; any error becomes one stderr line and an exit code."""
    try:
        with connect(server, **_client_options()) as lake:
            yield lake
    except client_errors.LakeError as exc:
        err.print(f"flight-lake: {exc.code}: {_message(exc)}", markup=False)
        raise typer.Exit(_exit_code(exc)) from exc
    except OSError as exc:
        err.print(f"flight-lake: {exc}", markup=False)
        raise typer.Exit(EXIT_OTHER) from exc


def _exit_code(error: client_errors.LakeError) -> int:
    """The exit code of ``error``'s code, or of its nearest ancestor's
    (``too_many_partitions`` exits as ``too_large``)."""
    for cls in type(error).__mro__:
        code = cls.__dict__.get("code")
        if isinstance(code, str) and code in EXIT_CODES:
            return EXIT_CODES[code]
    return EXIT_OTHER


def _message(error: client_errors.LakeError) -> str:
    """The whole detail (DuckDB's hint and caret lines included), the CSV line named."""
    lines = error.detail.strip("\n").splitlines() or [error.code]
    if error.line is not None and f"line {error.line}" not in lines[0]:
        lines[0] += f" (line {error.line})"
    return "\n".join(lines)


# -- ingest helpers ------------------------------------------------------------------


class _LineCounter:
    """Wraps a binary file and counts the newlines read so far (rows, roughly); ``stop()``
    makes every later read fail, so an interrupted upload never reaches its end."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._lock = threading.Lock()
        self._stopped = False
        self._ended = False
        self.lines = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        with self._lock:
            if self._stopped:
                raise KeyboardInterrupt
            self._ended = not data
            self.lines += data.count(b"\n")
        return data

    def stop(self) -> bool:
        """Stop reading; whether the whole file had already been read (it may be sent)."""
        with self._lock:
            self._stopped = True
            return self._ended

    def seekable(self) -> bool:
        return False


@contextlib.contextmanager
def _opened(file: Path) -> Iterator[IO[bytes]]:
    if str(file) == "-":
        yield sys.stdin.buffer
        return
    with file.open("rb") as handle:
        yield handle


@contextlib.contextmanager
def _upload_progress(dataset: str, total: int | None, files: int = 1) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal); yields ``update(bytes, lines)``
    (with several ``files``, their count is shown instead of the lines)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("~{task.fields[rows]:,} rows" if files == 1 else f"{files} files"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    task = progress.add_task(f"ingest {dataset}", total=total, rows=0)

    def update(sent: int, lines: int) -> None:
        progress.update(task, completed=sent, rows=max(lines - 1, 0))
        if total is not None and sent >= total:  # all sent: the server finishes the Parquet
            progress.update(task, description=f"ingest {dataset}: committing")

    with progress:
        yield update


def _name_from(file: Path) -> str:
    stem = re.sub(r"[^a-z0-9_]", "_", file.stem.lower())
    return stem if re.match(r"^[a-z_]", stem) else f"_{stem}"


# -- sql output ----------------------------------------------------------------------


@contextlib.contextmanager
def _sink(output: Path | None, *, binary: bool) -> Iterator[IO[Any]]:
    """stdout, or ``output`` written under a temporary name and renamed when complete."""
    if output is None:
        yield sys.stdout.buffer if binary else sys.stdout
        (sys.stdout.buffer if binary else sys.stdout).flush()
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            yield handle
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


def _write_table(reader: pa.RecordBatchReader, sink: IO[str], max_rows: int) -> None:
    table = Table(*(field.name for field in reader.schema), show_lines=False)
    shown = total = 0
    for batch in reader:
        total += batch.num_rows
        if shown < max_rows:
            for row in batch.slice(0, max_rows - shown).to_pylist():
                table.add_row(*(_cell(value) for value in row.values()))
            shown = min(total, max_rows)
    # Off a terminal rich assumes 80 columns; let wide results keep their shape instead.
    wide = None if sink is sys.stdout and out.is_terminal else 240
    console = Console(file=sink, highlight=False, width=wide)
    console.print(table)
    console.print(f"{total:,} row(s)" if shown == total else f"{shown:,} of {total:,} rows",
                  style="dim")


def _write_csv(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    with pacsv.CSVWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _write_json(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """A JSON array of row objects: byte for byte what the HTTP adapter answers."""
    rows = JsonRows()
    sink.write(rows.begin())
    for batch in reader:
        sink.write(rows.batch(batch))
    sink.write(rows.end())

def _write_parquet(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    with pq.ParquetWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _cell(value: Any) -> Text:
    return Text("null", style="dim") if value is None else Text(str(value))


def _size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{size} B"  # pragma: no cover
