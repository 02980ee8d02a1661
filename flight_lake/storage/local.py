"""A folder on this machine as storage (the default, ``./lake``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from fsspec.implementations.local import LocalFileSystem

from flight_lake.errors import StorageError
from flight_lake.storage.base import Storage

if TYPE_CHECKING:
    from flight_lake.settings import StorageSettings

log = structlog.get_logger()
TEMPORARY_PREFIX = ".tmp-"  # put_if_absent's file before it is linked into place


class LocalStorage(Storage, schemes=("file", "")):
    """Objects are files under a folder; DuckDB reads them by absolute path."""

    backend = "local"

    @classmethod
    def open(cls, settings: StorageSettings) -> LocalStorage:
        local = Path(settings.uri.removeprefix("file://")).expanduser().resolve()
        try:
            local.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the storage folder {local}: {exc.strerror or exc}; "
                "choose a writable folder (storage.uri or --storage)"
            ) from exc
        return cls(LocalFileSystem(), local.as_posix(), settings.probe_seconds)

    @property
    def uri(self) -> str:
        return f"file://{self.root}"

    def url(self, key: str) -> str:
        return self.path(key)

    def prepare(self, *, create: bool = False) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(
                f"the storage folder {self.root} is not writable; fix its permissions or "
                "choose another folder (storage.uri or --storage)"
            )
        super().prepare(create=create)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write a temporary file, then ``os.link`` it into place (fails if the name exists)."""
        path = self.path(key)
        with self._translate(key):
            directory = Path(path).parent
            directory.mkdir(parents=True, exist_ok=True)
            temporary = directory / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}"
            temporary.write_bytes(data)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            finally:
                temporary.unlink(missing_ok=True)
            return True

    def collect_temporaries(self, prefix: str, older_than: float) -> list[str]:
        """Remove ``.tmp-*`` files a crash left mid-``put_if_absent`` (older than
        ``older_than``: a live commit's lives milliseconds)."""
        removed: list[str] = []
        for temporary in Path(self.path(prefix, prefix=True)).rglob(f"{TEMPORARY_PREFIX}*"):
            try:
                if temporary.is_file() and temporary.stat().st_mtime < older_than:
                    temporary.unlink()
                    removed.append(temporary.as_posix())
            except FileNotFoundError:  # another collector got there first
                continue
        if removed:
            log.info("storage_temporaries_removed", files=len(removed))
        return removed

    def _probe(self) -> None:
        if not os.path.isdir(self.root):
            raise StorageError(f"the storage folder {self.root} is gone")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"the storage folder {self.root} is not writable")

    def _before_write(self, path: str) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
