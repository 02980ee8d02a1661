"""The storage protocol: objects under one root, whatever holds them.

Keys are ``/``-separated paths relative to the root (``datasets/x/<version>/part-0.parquet``);
every key is checked so nothing outside the root can be named. Storage knows nothing of
datasets or the catalog. The one write that must be atomic, a manifest commit, goes through
``put_if_absent``: an exclusive create that exactly one of two racing writers wins.

``Storage`` does everything through an fsspec filesystem; a backend is a subclass that says
which URI schemes it serves (``class GcsStorage(Storage, schemes=("gs",))``), how to build
its filesystem from the settings, how to create an object only if absent, the URL DuckDB
reads an object from and how to set DuckDB up to read it. Subclassing registers it, so a
new fsspec backend is one class and a ``storage.uri`` with its scheme.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

import fsspec
import structlog

from flight_lake.errors import InvalidInput, NotFound, StorageError

if TYPE_CHECKING:
    import duckdb

    from flight_lake.settings import StorageSettings

log = structlog.get_logger()

MAX_KEY_LENGTH = 1024
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=%\-]*$")  # % : encoded partition values
PROBE_PREFIX = "_catalog"  # where the start-up write check puts (and removes) its object


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str, *, allow_prefix: bool = False) -> str:
    """Return ``key`` if it names something under the root, else raise ``InvalidInput``.

    A key is relative, ``/``-separated, at most ``MAX_KEY_LENGTH`` characters, with no
    empty, ``.`` or ``..`` segment. With
    ``allow_prefix`` the empty key (the root) and a trailing ``/`` are accepted.
    """
    body = key.rstrip("/") if allow_prefix else key
    if allow_prefix and body == "":
        return ""
    if len(body) > MAX_KEY_LENGTH:  # S3's own limit; also far below any path limit
        raise InvalidInput(f"invalid storage key: longer than {MAX_KEY_LENGTH} characters")
    segments = body.split("/")
    if not body or not all(_KEY_SEGMENT.match(segment) for segment in segments):
        raise InvalidInput(f"invalid storage key: {key!r}")
    return body


BACKENDS: dict[str, type[Storage]] = {}
"""Backend class by URI scheme, filled as backends are defined (``""``: a plain path)."""


def backend_for(uri: str) -> type[Storage]:
    """The backend serving ``uri``; ``ValueError`` naming the known schemes otherwise."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS) if name)
        raise ValueError(f"must be a local path or one of {known}")
    backend.check_uri(uri)
    return backend


class Storage:
    """Read, write and list objects under one root; a backend fills in the few differences."""

    backend: ClassVar[str] = ""
    """The name health and logs show (``local``, ``s3``)."""
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, *, schemes: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.schemes = schemes
        for scheme in schemes:
            BACKENDS[scheme] = cls

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str,
                 probe_seconds: float = 5.0) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self._probe_seconds = probe_seconds
        self._probe_lock = threading.Lock()
        self._probed_at = float("-inf")
        self._reachability: dict[str, str] = {"status": "ok"}

    @staticmethod
    def from_settings(settings: StorageSettings) -> Storage:
        """The backend the URI names, built from ``settings`` (nothing is checked yet)."""
        try:
            backend = backend_for(settings.uri)
        except ValueError as exc:
            raise InvalidInput(f"invalid setting storage.uri: {exc}") from exc
        return backend.open(settings)

    # -- what a backend provides ---------------------------------------------------------

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Raise ``ValueError`` if ``uri`` cannot name a root of this backend."""

    @classmethod
    def open(cls, settings: StorageSettings) -> Storage:
        raise NotImplementedError

    @property
    def uri(self) -> str:
        return f"{self.schemes[0]}://{self.root}"

    def url(self, key: str) -> str:
        """The address DuckDB reads ``key`` from."""
        return f"{self.schemes[0]}://{self.path(key)}"

    def configure_duckdb(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Let ``connection`` read the URLs of ``url`` (extensions, secrets); none by default."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if it does not exist; ``False`` if it did.

        Atomic: of two racing writers exactly one gets ``True``, and a reader never sees
        a partial object.
        """
        raise NotImplementedError

    def collect_temporaries(self, prefix: str, older_than: float) -> builtins.list[str]:
        """Remove what an interrupted ``put_if_absent`` left under ``prefix``.

        Only files older than ``older_than`` (a POSIX time) go, so a commit writing one
        now keeps it. Returns their paths; none by default (nothing writes temporaries).
        """
        return []

    def prepare(self, *, create: bool = False) -> None:
        """Start-up check: the root exists (``create``: make it) and takes writes.

        Raises ``StorageError`` with one line naming what is wrong and how to fix it.
        """
        probe = f"{PROBE_PREFIX}/write-probe-{uuid.uuid4().hex}"
        try:
            self.put(probe, b"")
            self.delete(probe)
        except (StorageError, NotFound) as exc:
            raise StorageError(f"storage {self.uri} does not take writes: {exc.detail}") from exc

    def _probe(self) -> None:
        """One cheap request that fails if the storage stopped answering."""
        self.fs.ls(self.root, detail=False)

    def _before_write(self, path: str) -> None:
        """Called before writing ``path``; local folders make the parent directory."""

    # -- health ----------------------------------------------------------------------------

    def reachability(self) -> dict[str, str]:
        """``{"status": "ok"}`` or ``{"status": "unreachable", "detail": …}``, for health.

        Probes at most once per ``storage.probe_seconds``; a caller arriving while another
        probes gets the last answer instead of waiting.
        """
        if time.monotonic() - self._probed_at < self._probe_seconds:
            return self._reachability
        if not self._probe_lock.acquire(blocking=False):
            return self._reachability
        try:
            try:
                self._probe()
                result = {"status": "ok"}
            except Exception as exc:  # any failure means: not answering as it should
                result = {"status": "unreachable", "detail": one_line(exc)}
                log.warning("storage_unreachable", storage=self.uri, error=result["detail"])
            self._reachability = result
            self._probed_at = time.monotonic()
            return result
        finally:
            self._probe_lock.release()

    # -- keys ------------------------------------------------------------------------------

    def path(self, key: str, *, prefix: bool = False) -> str:
        """The filesystem path of ``key`` (checked), as fsspec and pyarrow take it."""
        key = check_key(key, allow_prefix=prefix)
        return f"{self.root}/{key}" if key else self.root

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        with self._translate(key):
            return bytes(self.fs.cat_file(self.path(key)))

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        with self._translate(key), self.fs.open(self.path(key), "rb") as handle:
            yield handle

    def size(self, key: str) -> int:
        with self._translate(key):
            return int(self.fs.size(self.path(key)))

    def exists(self, key: str) -> bool:
        with self._translate(key):
            return bool(self.fs.exists(self.path(key)))

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object under ``prefix`` (recursively), sorted by key."""
        base = self.path(prefix, prefix=True)
        with self._translate(prefix):
            if not self.fs.exists(base):
                return []
            found = self.fs.find(base, detail=True)
        objects: builtins.list[ObjectInfo] = []
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            key = path[len(self.root) + 1 :] if path.startswith(self.root + "/") else path
            objects.append(ObjectInfo(key=key, size=int(info.get("size") or 0)))
        return sorted(objects, key=lambda item: item.key)

    def list_children(self, prefix: str) -> builtins.list[str]:
        """Names directly under ``prefix`` (one level), sorted."""
        base = self.path(prefix, prefix=True)
        with self._translate(prefix):
            if not self.fs.exists(base):
                return []
            entries = self.fs.ls(base, detail=False)
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    # -- writes ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        with self._translate(key):
            self._before_write(path)
            self.fs.pipe_file(path, data)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A streaming writer for ``key`` (S3: multipart upload, bounded buffer)."""
        path = self.path(key)
        with self._translate(key):
            self._before_write(path)
            with self.fs.open(path, "wb") as handle:
                yield handle

    def delete(self, key: str) -> None:
        with self._translate(key), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix``; a missing prefix is not an error."""
        base = self.path(prefix)
        with self._translate(prefix), contextlib.suppress(FileNotFoundError):
            if self.fs.exists(base):
                self.fs.rm(base, recursive=True)

    @contextlib.contextmanager
    def _translate(self, key: str) -> Iterator[None]:
        """Turn filesystem errors into the lake's errors, once, here."""
        try:
            yield
        except FileNotFoundError as exc:
            raise NotFound(f"no such object: {key}") from exc
        except IsADirectoryError as exc:
            raise NotFound(f"not an object: {key}") from exc
        except (PermissionError, OSError) as exc:
            log.warning("storage_error", key=key, error=str(exc))
            raise StorageError(f"storage failed for {key}: {exc}") from exc


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (whitespace squashed, at most 300 characters)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
