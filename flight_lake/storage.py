"""Object storage under one root: a local folder (default) or an S3 bucket and prefix.

Keys are ``/``-separated paths relative to the root (``datasets/x/<version>/part-0.parquet``);
every key is checked so nothing outside the root can be named. Storage knows nothing of
datasets or the catalog. The one write that must be atomic, a manifest commit, goes through
``put_if_absent``: an exclusive create that exactly one of two racing writers wins.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import fsspec
import structlog
from fsspec.implementations.local import LocalFileSystem

from flight_lake.errors import InvalidInput, NotFound, StorageError
from flight_lake.settings import StorageSettings

log = structlog.get_logger()

_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=\-]*$")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class S3Location:
    """What DuckDB's httpfs needs to read the same objects."""

    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


def check_key(key: str, *, allow_prefix: bool = False) -> str:
    """Return ``key`` if it names something under the root, else raise ``InvalidInput``.

    A key is relative, ``/``-separated, with no empty, ``.`` or ``..`` segment. With
    ``allow_prefix`` the empty key (the root) and a trailing ``/`` are accepted.
    """
    body = key.rstrip("/") if allow_prefix else key
    if allow_prefix and body == "":
        return ""
    segments = body.split("/")
    if not body or not all(_KEY_SEGMENT.match(segment) for segment in segments):
        raise InvalidInput(f"invalid storage key: {key!r}")
    return body


class Storage:
    """Read, write and list objects under one root, locally or on S3."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        backend: Literal["local", "s3"],
        s3: S3Location | None = None,
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.backend = backend
        self.s3 = s3

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> Storage:
        uri = settings.uri
        if uri.startswith("s3://"):
            return cls._s3(settings)
        local = Path(uri.removeprefix("file://")).expanduser().resolve()
        local.mkdir(parents=True, exist_ok=True)
        return cls(LocalFileSystem(), local.as_posix(), "local")

    @classmethod
    def _s3(cls, settings: StorageSettings) -> Storage:
        import s3fs  # imported here: local-only servers never pay for botocore

        bucket, _, prefix = settings.uri.removeprefix("s3://").strip("/").partition("/")
        key_id = settings.access_key_id.get_secret_value() if settings.access_key_id else None
        secret = (
            settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
        )
        fs = s3fs.S3FileSystem(
            key=key_id,
            secret=secret,
            endpoint_url=settings.endpoint_url,
            client_kwargs={"region_name": settings.region},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        location = S3Location(
            bucket, prefix, settings.endpoint_url, settings.region, key_id, secret
        )
        root = f"{bucket}/{prefix}" if prefix else bucket
        return cls(fs, root, "s3", location)

    @property
    def uri(self) -> str:
        return f"s3://{self.root}" if self.backend == "s3" else f"file://{self.root}"

    def path(self, key: str, *, prefix: bool = False) -> str:
        """The filesystem path of ``key`` (checked), as fsspec and pyarrow take it."""
        key = check_key(key, allow_prefix=prefix)
        return f"{self.root}/{key}" if key else self.root

    def url(self, key: str) -> str:
        """The address DuckDB reads ``key`` from: an absolute path or an ``s3://`` URL."""
        return f"s3://{self.path(key)}" if self.backend == "s3" else self.path(key)

    # -- reads ---------------------------------------------------------------------

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

    # -- writes --------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        with self._translate(key):
            if self.backend == "local":
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if it does not exist; ``False`` if it did.

        Atomic: of two racing writers exactly one gets ``True``, and a reader never sees
        a partial object. Locally: write a temporary file, then ``os.link`` it into place
        (link fails if the name exists). On S3: a conditional put (``If-None-Match: *``).
        """
        path = self.path(key)
        with self._translate(key):
            if self.backend == "s3":
                try:
                    self.fs.pipe_file(path, data, mode="create")
                except FileExistsError:
                    return False
                return True
            directory = Path(path).parent
            directory.mkdir(parents=True, exist_ok=True)
            temporary = directory / f".tmp-{uuid.uuid4().hex}"
            temporary.write_bytes(data)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            finally:
                temporary.unlink(missing_ok=True)
            return True

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A streaming writer for ``key`` (S3: multipart upload, bounded buffer)."""
        path = self.path(key)
        with self._translate(key):
            if self.backend == "local":
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
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
