"""``FlightLakeClient``: a thin, typed layer over ``pyarrow.flight`` for one flight_lake server.

Every method is a few plain Flight calls with the JSON commands of the protocol (DoPut
``{"op": "ingest", …}``, GetFlightInfo ``{"sql": …}`` or ``[name]``, DoGet on the tickets,
DoAction ``catalog.*``/``health``), so anything here can be done with pyarrow.flight alone.
Flight errors become the exceptions in ``flight_lake_client.errors``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast

import pyarrow as pa
import pyarrow.flight as flight

from flight_lake_client.errors import Busy, LakeError, TooLarge, Unavailable, from_flight_error
from flight_lake_client.frames import DtypeBackend, as_reader, to_pandas, to_polars
from flight_lake_client.manifest import Manifest
from flight_lake_client.protocol import CHUNK_SCHEMA, END_MARKER, Mode

ProgressCallback = Callable[[int, "int | None"], None]
"""Called after each piece of an upload with ``(bytes_sent, total_bytes or None)``."""

DEFAULT_SERVER = "grpc://127.0.0.1:8815"
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_STREAMS = 4  # files uploaded at once by ingest_csv with several paths
BUSY_RETRIES = 12  # a file refused as busy is sent again this many times at most
REUSE_CONNECTION = "arrow-flight-reuse-connection://?"
TOKEN_RENEW_SECONDS = 30  # log in again this long before the token expires


class SupportsRead(Protocol):
    """Anything with ``read(size)``: an open file (binary or text), a socket file, a wrapper."""

    def read(self, size: int = -1, /) -> bytes | str: ...


CsvSource = str | os.PathLike[str] | bytes | SupportsRead
Columns = str | Sequence[str]
"""Column names: a list, or one string (commas separate several)."""
PathList = Sequence[str | os.PathLike[str]]
"""Several files for one dataset: a list or tuple of paths."""


@contextlib.contextmanager
def _translated_errors(location: str | None = None) -> Iterator[None]:
    """Raise every Flight/Arrow error of a call as the matching ``LakeError``."""
    try:
        yield
    except (flight.FlightError, pa.ArrowException) as exc:
        raise from_flight_error(exc, location) from exc


class FlightLakeClient:
    """A connection to one flight_lake server; use it as a context manager or ``close()`` it."""

    def __init__(
        self,
        location: str = DEFAULT_SERVER,
        *,
        tls_root_certs: bytes | None = None,
        disable_server_verification: bool = False,
        headers: Mapping[str, str] | None = None,
        middleware: Sequence[flight.ClientMiddlewareFactory] | None = None,
        timeout: float | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        cert_chain: bytes | None = None,
        private_key: bytes | None = None,
    ) -> None:
        self.location = location
        self._client_kwargs: dict[str, Any] = {"middleware": list(middleware or [])}
        if tls_root_certs is not None:
            self._client_kwargs["tls_root_certs"] = tls_root_certs
        if disable_server_verification:
            self._client_kwargs["disable_server_verification"] = True
        if cert_chain is not None or private_key is not None:  # mutual TLS
            self._client_kwargs.update(cert_chain=cert_chain, private_key=private_key)
        self._flight = flight.FlightClient(location, **self._client_kwargs)
        self._elsewhere: dict[str, flight.FlightClient] = {}  # endpoints on other servers
        self._elsewhere_lock = threading.Lock()
        self._headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if token is not None:
            self._headers.append((b"authorization", f"Bearer {token}".encode()))
        self._timeout = timeout
        self._options = flight.FlightCallOptions(timeout=timeout, headers=self._headers)
        self._credentials: tuple[str, str] | None = None
        self._expires_at: float | None = None
        if user is not None:
            try:
                self.login(user, password or "")
            except BaseException:
                self.close()
                raise

    def login(self, user: str, password: str) -> str:
        """Trade a user name and password for a token (the Flight handshake); later calls
        carry it, and it is renewed the same way shortly before it expires (the server's
        ``auth.token_ttl_seconds``). Returns the token."""
        with _translated_errors(self.location):
            _, value = self._flight.authenticate_basic_token(
                user, password, flight.FlightCallOptions(timeout=self._timeout))
        self._headers = [h for h in self._headers if h[0] != b"authorization"]
        self._headers.append((b"authorization", value))
        self._options = flight.FlightCallOptions(timeout=self._timeout, headers=self._headers)
        token = value.decode().removeprefix("Bearer ")
        self._credentials = (user, password)
        self._expires_at = _expiry(token)
        return token

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        for other in self._elsewhere.values():
            other.close()
        self._flight.close()

    def _reconnect(self) -> None:
        """Drop the connection (cancelling the calls in flight) and open a new one."""
        with contextlib.suppress(Exception):
            self._flight.close()
        self._flight = flight.FlightClient(self.location, **self._client_kwargs)

    def __enter__(self) -> FlightLakeClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FlightLakeClient({self.location!r})"

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        if (self._credentials is not None and self._expires_at is not None
                and time.time() > self._expires_at - TOKEN_RENEW_SECONDS):
            self.login(*self._credentials)
        return _translated_errors(self.location)

    @property
    def flight_client(self) -> flight.FlightClient:
        """The underlying ``pyarrow.flight.FlightClient``, for anything not wrapped here."""
        return self._flight

    # -- ingest ----------------------------------------------------------------------

    def ingest_csv(
        self,
        source: CsvSource | PathList,
        *,
        name: str,
        mode: Mode = "create",
        progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        size: int | None = None,
        partition_by: Columns | None = None,
        sort_by: Columns | None = None,
        max_streams: int = DEFAULT_STREAMS,
    ) -> Manifest:
        """Upload a CSV file (a path, bytes or an open file) as dataset ``name``; a
        Parquet or Arrow IPC file is taken too (the server tells them by their first bytes).

        With a list of paths, the files become one version, all or none: they are staged
        in one transaction, the first alone (it fixes the columns and types, unless
        ``mode`` is append), the others up to ``max_streams`` at a time (fewer if the
        server allows fewer uploads per client), then committed once. If any file fails,
        nothing is committed and the error names the file (``error.extra["file"]``).

        The file is streamed in ``chunk_size`` pieces, never read whole; ``progress`` is
        called after each with the bytes sent so far and the total (``None`` if unknown).
        gzip and zstd files are sent as they are (the server decompresses them). ``size``
        gives the byte count when ``source`` cannot tell (a wrapper around a file). A file
        whose size is known and over the server's ``max_upload_bytes`` (from ``health()``)
        is refused with ``TooLarge`` before anything is sent. If the upload is interrupted
        (an exception in ``progress`` or while reading, or Ctrl-C), the call is cancelled
        and the server commits nothing.

        ``partition_by`` and ``sort_by`` (column names, a list or one comma-separated
        string) set the dataset's layout: Hive-style ``column=value`` folders, and rows
        sorted so reads that filter on those columns skip most objects. Left out on
        ``append`` the dataset's layout is used; on ``create``/``replace`` none.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if isinstance(source, list | tuple):
            return self._ingest_files([Path(path) for path in source], name, mode, progress,
                                      chunk_size, max_streams,
                                      _layout_fields(partition_by, sort_by))
        with _open_csv(cast(CsvSource, source)) as (handle, known):
            total = known if size is None else size
            if total is not None:
                self._check_upload_size(total, name)
            return self._put(_ingest_command(name, "csv", mode, partition_by, sort_by),
                             CHUNK_SCHEMA,
                             _chunk_batches(handle, chunk_size), progress, total)

    def _check_upload_size(self, size: int, name: str,
                           health: dict[str, Any] | None = None) -> None:
        """Refuse, before the first byte, a file over the server's upload cap."""
        if health is None:
            health = self._health_or_empty()
        limit = health.get("max_upload_bytes")
        if isinstance(limit, int) and size > limit:
            raise TooLarge(
                f"{name}: the file is {size:,} bytes, over the server's limit of {limit:,} "
                "bytes (ingest.max_upload_bytes); nothing was sent")

    def _health_or_empty(self) -> dict[str, Any]:
        try:
            return self.health()
        except LakeError:  # no health for us (or an older server): the server still checks
            return {}

    def _ingest_files(self, paths: list[Path], name: str, mode: Mode,
                      progress: ProgressCallback | None, chunk_size: int,
                      max_streams: int, layout: dict[str, list[str]]) -> Manifest:
        """Stage every file in one transaction, then commit once (see ``ingest_csv``)."""
        if not paths:
            raise ValueError("ingest_csv needs at least one path")
        if max_streams <= 0:
            raise ValueError("max_streams must be positive")
        health = self._health_or_empty()
        sizes = [path.stat().st_size for path in paths]
        for path, file_size in zip(paths, sizes, strict=True):
            self._check_upload_size(file_size, str(path), health)
        limits = [health.get("max_concurrent_ingests"),
                  health.get("max_concurrent_ingests_per_client")]
        streams = min([max_streams, len(paths)] + [n for n in limits if isinstance(n, int)])
        sent = _SentBytes(progress, sum(sizes))
        begun = self._action("ingest.begin", {"name": name, "mode": mode, **layout})
        transaction = str(begun["transaction"])
        try:
            first, rest = (([], paths) if mode == "append" else (paths[:1], paths[1:]))
            for path in first:
                self._stage(transaction, name, mode, path, chunk_size, sent)
            if rest:
                self._stage_all(transaction, name, mode, rest, chunk_size, sent, streams)
            return Manifest.from_dict(self._action(
                "ingest.commit", {"transaction": transaction, "files": len(paths)}))
        except BaseException:
            with contextlib.suppress(Exception):
                self._action("ingest.abort", {"transaction": transaction})
            raise

    def _stage_all(self, transaction: str, name: str, mode: Mode, paths: list[Path],
                   chunk_size: int, sent: _SentBytes, streams: int) -> None:
        """Stage ``paths`` over ``streams`` uploads at once; the first failure stops the
        files not yet started and is raised."""
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="ingest-file") as pool:
            futures: list[Future[None]] = [
                pool.submit(self._stage, transaction, name, mode, path, chunk_size, sent)
                for path in paths]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                sent.stop()
                for future in futures:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]

    def _stage(self, transaction: str, name: str, mode: Mode, path: Path, chunk_size: int,
               sent: _SentBytes) -> None:
        command = json.dumps({"op": "ingest", "name": name, "format": "file", "mode": mode,
                              "end_marker": True, "transaction": transaction,
                              "file": _label(path)}).encode()
        for attempt in range(BUSY_RETRIES + 1):
            sent.check()
            sent.begin_file()
            try:
                with path.open("rb") as handle:
                    self._put_raw(command, CHUNK_SCHEMA, _chunk_batches(handle, chunk_size),
                                  sent.add, None)
                return
            except Busy as refused:  # no slot free now: the file was not taken; send again
                if attempt == BUSY_RETRIES:
                    raise
                sent.rewind(refused)
                time.sleep(float(refused.extra.get("retry_after", 5)))

    def ingest(
        self,
        data: Any,
        *,
        name: str,
        mode: Mode = "create",
        progress: ProgressCallback | None = None,
        partition_by: Columns | None = None,
        sort_by: Columns | None = None,
    ) -> Manifest:
        """Upload rows: a pyarrow Table/RecordBatchReader or a pandas/polars DataFrame
        (``partition_by`` and ``sort_by`` as for ``ingest_csv``)."""
        reader = as_reader(data)
        sized = ((batch, batch.nbytes) for batch in reader)
        return self._put(_ingest_command(name, "arrow", mode, partition_by, sort_by),
                         reader.schema, sized, progress, None)

    def _put(
        self,
        command: bytes,
        schema: pa.Schema,
        batches: Iterator[tuple[pa.RecordBatch, int]],
        progress: ProgressCallback | None,
        total: int | None,
    ) -> Manifest:
        return Manifest.from_dict(json.loads(
            self._put_raw(command, schema, batches, progress, total)))

    def _put_raw(
        self,
        command: bytes,
        schema: pa.Schema,
        batches: Iterator[tuple[pa.RecordBatch, int]],
        progress: ProgressCallback | None,
        total: int | None,
    ) -> bytes:
        """One DoPut: the batches, the end marker, and the server's answer (JSON bytes)."""
        descriptor = flight.FlightDescriptor.for_command(command)
        with self._errors():
            writer, metadata_reader = self._flight.do_put(descriptor, schema, self._options)
        sent = 0
        try:
            for batch, size in batches:
                writer.write_batch(batch)
                sent += size
                if progress is not None:
                    progress(sent, total)
            writer.write_metadata(pa.py_buffer(END_MARKER))
            writer.done_writing()
            metadata = metadata_reader.read()
        except (flight.FlightError, pa.ArrowException) as exc:
            # A refusal mid-stream (too large, bad CSV) breaks the write; the server's own
            # status comes with close().
            with self._errors():
                writer.close()
            raise from_flight_error(exc, self.location) from exc
        except BaseException:
            # Stopped on our side (Ctrl-C, the source failed): cancel the call. Closing the
            # writer would end the stream cleanly, and the server would take a cut-off file
            # as the whole upload; dropping the connection tells it the upload was cancelled.
            self._reconnect()
            with contextlib.suppress(Exception):  # closed now: not again, noisily, when freed
                writer.close()
            raise
        with self._errors():
            writer.close()
        if metadata is None:
            raise from_flight_error(RuntimeError("the server sent no answer"))
        return bytes(metadata.to_pybytes())

    # -- query -----------------------------------------------------------------------

    def sql(self, query: str) -> pa.Table:
        """Run ``query`` and return the whole result as a ``pyarrow.Table``."""
        with self._errors():
            return self.sql_reader(query).read_all()

    def sql_reader(self, query: str) -> pa.RecordBatchReader:
        """Run ``query`` and stream the result batch by batch (for results larger than memory)."""
        command = json.dumps({"sql": query}).encode()
        with self._errors():
            info = self._flight.get_flight_info(
                flight.FlightDescriptor.for_command(command), self._options)
        return self._stream(info)

    def sql_pandas(self, query: str, *, dtype_backend: DtypeBackend = "numpy_nullable") -> Any:
        """Run ``query`` and return a pandas DataFrame (nullable dtypes by default)."""
        return to_pandas(self.sql(query), dtype_backend)

    def sql_polars(self, query: str) -> Any:
        """Run ``query`` and return a polars DataFrame."""
        return to_polars(self.sql(query))

    def read_dataset(self, name: str, *, max_workers: int = 4) -> pa.Table:
        """Fetch a whole dataset, its data objects downloaded in parallel, in order.

        Each object comes from the server its endpoint names: a server with
        ``cluster.peers`` spreads them over its replicas. An object whose replica does not
        answer (``Unavailable``) is fetched from this connection's server instead.
        """
        with self._errors():
            info = self._flight.get_flight_info(flight.FlightDescriptor.for_path(name),
                                                self._options)
        if not info.endpoints:
            return info.schema.empty_table()

        def fetch(endpoint: flight.FlightEndpoint) -> pa.Table:
            client = self._client_for(endpoint)
            try:
                with self._errors():
                    return client.do_get(endpoint.ticket, self._options).read_all()
            except Unavailable:
                if client is self._flight:
                    raise
            with self._errors():
                return self._flight.do_get(endpoint.ticket, self._options).read_all()

        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(info.endpoints)))) as pool:
            parts = list(pool.map(fetch, info.endpoints))
        return pa.concat_tables(parts)

    def _stream(self, info: flight.FlightInfo) -> pa.RecordBatchReader:
        """One reader over every endpoint of ``info``, in order; opens the first one now."""
        endpoints = list(info.endpoints)
        if not endpoints:
            return pa.RecordBatchReader.from_batches(info.schema, iter(()))
        with self._errors():
            first = self._client_for(endpoints[0]).do_get(endpoints[0].ticket, self._options)
            schema = first.schema

        def batches() -> Iterator[pa.RecordBatch]:
            with self._errors():
                yield from _read_stream(first)
                for endpoint in endpoints[1:]:
                    yield from _read_stream(
                        self._client_for(endpoint).do_get(endpoint.ticket, self._options))

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _client_for(self, endpoint: flight.FlightEndpoint) -> flight.FlightClient:
        """This connection, unless the endpoint names another server."""
        others = [str(loc.uri.decode() if isinstance(loc.uri, bytes) else loc.uri)
                  for loc in endpoint.locations]
        if not others or self.location in others or REUSE_CONNECTION in others:
            return self._flight
        with self._elsewhere_lock:  # read_dataset's threads ask at once
            if others[0] not in self._elsewhere:
                self._elsewhere[others[0]] = flight.FlightClient(others[0],
                                                                 **self._client_kwargs)
            return self._elsewhere[others[0]]

    # -- catalog ---------------------------------------------------------------------

    def datasets(self) -> list[Manifest]:
        """Every dataset's current manifest, by name."""
        return [Manifest.from_dict(body) for body in self._action("catalog.list")]

    def manifest(self, name: str) -> Manifest:
        """The current manifest of dataset ``name`` (``NotFound`` if there is none)."""
        return Manifest.from_dict(self._action("catalog.get", {"name": name}))

    def register(self, name: str, keys: Sequence[str], *, mode: Mode = "create") -> Manifest:
        """Commit Parquet objects already in storage under ``datasets/<name>/``."""
        return Manifest.from_dict(
            self._action("catalog.register", {"name": name, "keys": list(keys), "mode": mode}))

    def health(self) -> dict[str, Any]:
        """The server's status: ``{"status": "ok", "service": "flight_lake", …}``."""
        result: dict[str, Any] = self._action("health")
        return result

    def _action(self, action: str, body: dict[str, Any] | None = None) -> Any:
        payload = json.dumps(body or {}).encode()
        with self._errors():
            results = list(self._flight.do_action(flight.Action(action, payload), self._options))
        if not results:
            return None
        return json.loads(results[0].body.to_pybytes())


def connect(
    location: str = DEFAULT_SERVER,
    *,
    tls_root_certs: bytes | None = None,
    disable_server_verification: bool = False,
    headers: Mapping[str, str] | None = None,
    middleware: Sequence[flight.ClientMiddlewareFactory] | None = None,
    timeout: float | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    cert_chain: bytes | None = None,
    private_key: bytes | None = None,
) -> FlightLakeClient:
    """Connect to the flight_lake server at ``location`` (``grpc://host:port`` or ``grpc+tls://…``).

    On a server with users, pass ``user`` and ``password`` (the handshake runs at once and
    later calls carry the token it returns) or a ``token`` (or an API key) directly.
    ``tls_root_certs`` (PEM) verifies a server whose certificate a private CA signed;
    ``cert_chain`` and ``private_key`` (PEM) are the client's certificate for mutual TLS.
    ``headers`` go with every call and ``middleware`` is passed to
    ``pyarrow.flight.FlightClient``. ``timeout`` (seconds) applies to each call. Without
    credentials connecting is lazy: the first call reports an unreachable server as
    ``Unavailable``.
    """
    return FlightLakeClient(
        location,
        tls_root_certs=tls_root_certs,
        disable_server_verification=disable_server_verification,
        headers=headers,
        middleware=middleware,
        timeout=timeout,
        user=user,
        password=password,
        token=token,
        cert_chain=cert_chain,
        private_key=private_key,
    )


def _expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (read, not verified: the server verifies), if any."""
    try:
        claims = token.split(".")[1]
        expires = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]
        return float(expires)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _ingest_command(name: str, data_format: str, mode: str,
                    partition_by: Columns | None = None, sort_by: Columns | None = None) -> bytes:
    # end_marker: the stream ends with END_MARKER, so the server can tell a finished upload
    # from one cut off by a killed client (docs/FLIGHT.md).
    command: dict[str, Any] = {"op": "ingest", "name": name, "format": data_format,
                               "mode": mode, "end_marker": True,
                               **_layout_fields(partition_by, sort_by)}
    return json.dumps(command).encode()


def _layout_fields(partition_by: Columns | None, sort_by: Columns | None
                   ) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, columns in (("partition_by", partition_by), ("sort_by", sort_by)):
        if columns is not None:  # left out: the server decides (on append, the dataset's)
            fields[key] = [columns] if isinstance(columns, str) else list(columns)
    return fields


class _SentBytes:
    """Bytes sent so far over every upload of one ``ingest_csv`` call, for ``progress``;
    ``stop`` makes the uploads still running fail at their next piece."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self._progress, self._total = progress, total
        self._lock = threading.Lock()
        self._sent = 0
        self._stopped = False
        self._by_thread: dict[int, int] = {}

    def add(self, sent_in_file: int, _total: int | None) -> None:
        self.check()
        with self._lock:
            thread = threading.get_ident()
            self._sent += sent_in_file - self._by_thread.get(thread, 0)
            self._by_thread[thread] = sent_in_file
            sent = self._sent
        if self._progress is not None:
            self._progress(sent, self._total)

    def begin_file(self) -> None:
        """This thread starts sending a file (its bytes count from zero)."""
        with self._lock:
            self._by_thread.pop(threading.get_ident(), None)

    def rewind(self, _reason: BaseException) -> None:
        """The file this thread was sending is sent again from its start."""
        with self._lock:
            self._sent -= self._by_thread.pop(threading.get_ident(), 0)

    def check(self) -> None:
        if self._stopped:
            raise _Stopped("another file of this upload failed")

    def stop(self) -> None:
        self._stopped = True


class _Stopped(Exception):
    """An upload stopped because another file of the same call failed."""


def _label(path: Path) -> str:
    """How a file is named in the server's errors: its path as given (its tail if long)."""
    text = str(path)
    return text if len(text) <= 255 else "…" + text[-254:]


def _read_stream(reader: flight.FlightStreamReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is not None:
            yield chunk.data


def _chunk_batches(handle: SupportsRead, chunk_size: int) -> Iterator[tuple[pa.RecordBatch, int]]:
    """The file as one-row ``chunk: binary`` batches, each with its size in bytes."""
    while True:
        piece = handle.read(chunk_size)
        if not piece:
            return
        if isinstance(piece, str):
            piece = piece.encode("utf-8")
        batch = pa.RecordBatch.from_arrays([pa.array([piece], pa.binary())], schema=CHUNK_SCHEMA)
        yield batch, len(piece)


@contextlib.contextmanager
def _open_csv(source: CsvSource) -> Iterator[tuple[SupportsRead, int | None]]:
    """An open binary (or text) handle on ``source`` and its remaining size, if known."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as handle:
            yield handle, path.stat().st_size
    else:
        yield source, _remaining_size(source)


def _remaining_size(handle: Any) -> int | None:
    if isinstance(handle, io.TextIOBase):
        return None  # characters, not bytes
    try:
        if not handle.seekable():
            return None
        position = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(position)
        return int(end - position)
    except (OSError, ValueError, AttributeError):
        return None
