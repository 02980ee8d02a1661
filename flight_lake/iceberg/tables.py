"""The Iceberg mirror of the catalog: every dataset version becomes an Iceberg snapshot.

``IcebergTables(storage, catalog, storage_settings)``:

- ``sync(name)`` brings ``name``'s table up to its newest manifest: it finds the newest
  ``v<N>.metadata.json`` (``version-hint.text``, then forward while ``v<N+1>`` exists, or a
  listing if the hint is missing or wrong), commits each later manifest version in order
  (``snapshots.commit_version``) and points the hint at the newest. Returns that version.
- ``sync_all()`` does it for every dataset (``flight-lake iceberg sync``).
- ``on_commit(manifest)`` is the catalog listener: ``sync`` after every commit, never
  raising (the manifest is committed and stays the truth; the next commit or a sync
  catches the table up). Its common case reads nothing back from storage: the commit
  follows the version this server mirrored last (see ``sync``).

Two servers may mirror the same dataset at once: each metadata file is derived from one
manifest version and written create-only, so one wins and the other loads it and goes on;
the hint is rewritten until no newer metadata file exists after it was written. A dataset
whose schema Iceberg cannot hold has no table (``iceberg_unsupported`` is logged). One lock
per dataset in this process (taken alone; the catalog calls listeners after its commit lock
is released) keeps two threads of one server from doing the same work; ``_guard`` (taken
alone, nothing called under it) holds the per-dataset locks and the last mirrored table of
the ``REMEMBERED`` most recent datasets, so the next commit need not read it back.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog

from flight_lake.catalog import Catalog, Manifest
from flight_lake.errors import LakeError
from flight_lake.iceberg.layout import (
    METADATA_FILE,
    file_io_properties,
    hint_key,
    metadata_key,
    table_key,
)
from flight_lake.settings import SNAPSHOTS_KEPT, StorageSettings
from flight_lake.storage import Storage

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = structlog.get_logger()

REMEMBERED = 64  # datasets whose last mirrored table is kept for their next commit


class IcebergTables:
    """Keeps ``_iceberg/lake/<name>`` in step with the manifests of each dataset."""

    def __init__(self, storage: Storage, catalog: Catalog, settings: StorageSettings,
                 snapshots_kept: int = SNAPSHOTS_KEPT) -> None:
        self.storage, self.catalog, self.snapshots_kept = storage, catalog, snapshots_kept
        self.properties = file_io_properties(settings, writing=True)
        self._locks: dict[str, threading.Lock] = {}
        self._last: dict[str, tuple[Table, Manifest]] = {}  # by dataset, oldest sync first
        self._guard = threading.Lock()

    def on_commit(self, manifest: Manifest) -> None:
        try:
            self.sync(manifest.name, manifest)
        except Exception as exc:  # the manifest is the truth; the mirror catches up later
            log.warning("iceberg_sync_failed", dataset=manifest.name,
                        version=manifest.version, error=str(exc))

    def sync_all(self) -> dict[str, int | None]:
        """Sync every dataset; its Iceberg version (None: it has no table) by name."""
        return {manifest.name: self.sync(manifest.name) for manifest in self.catalog.list()}

    def sync(self, name: str, committed: Manifest | None = None) -> int | None:
        """Mirror every manifest version of ``name`` not mirrored yet; the newest mirrored.

        ``committed``: the manifest this server has just committed. When it follows the
        version this server mirrored last (or is the first), nothing is read back: its
        metadata file is written create-only, so a server that mirrored it first is found
        then (``VersionTaken``), and its table is loaded.
        """
        from flight_lake.iceberg.snapshots import (
            UnsupportedSchema,
            VersionTaken,
            commit_version,
            load_version,
        )

        with self._lock_for(name):
            with self._guard:
                known = self._last.get(name)
            table: Table | None = None
            previous: Manifest | None = None
            if committed is not None and (committed.version == 1 or (
                    known is not None and known[1].version == committed.version - 1)):
                done, versions = committed.version - 1, [committed.version]
            else:
                versions = self.catalog.history(name)
                if not versions:
                    return None
                done = self.current_version(name)
            if known is not None and known[1].version == done:  # files never change
                table, previous = known
            elif done:  # metadata v<done> mirrors manifest version <done>
                table = load_version(self.storage, self.properties, name, done)
                previous = self.catalog.manifest(name, done)
            mirrored = done
            for version in (v for v in versions if v > done):
                manifest = (committed if committed is not None and committed.version == version
                            else self.catalog.manifest(name, version))
                try:
                    table = commit_version(self.storage, self.properties, table, previous,
                                           manifest, self.snapshots_kept)
                except VersionTaken:  # another server mirrored it first: build on theirs
                    log.info("iceberg_version_taken", dataset=name, version=version)
                    table = load_version(self.storage, self.properties, name, version)
                except UnsupportedSchema as exc:
                    log.warning("iceberg_unsupported", dataset=name, version=version,
                                error=str(exc))
                    break
                previous, mirrored = manifest, version
            if table is not None and previous is not None:
                self._remember(name, table, previous)
            if mirrored != done or (mirrored and self._read_hint(name) != mirrored):
                self._point_hint(name, mirrored)
            if mirrored != done:
                log.info("iceberg_synced", dataset=name, version=mirrored, previous=done)
            return mirrored or None

    def current_version(self, name: str) -> int:
        """The newest ``v<N>.metadata.json`` of ``name`` (0: none)."""
        version = self._read_hint(name)
        if not version or not self.storage.exists(metadata_key(name, version)):
            found = [int(match.group(1))
                     for entry in self.storage.list_children(f"{table_key(name)}/metadata")
                     if (match := METADATA_FILE.match(entry))]
            return max(found, default=0)
        while self.storage.exists(metadata_key(name, version + 1)):
            version += 1
        return version

    def _point_hint(self, name: str, version: int) -> None:
        """Write ``version`` to the hint, again while a newer metadata file turns up (a
        server that mirrored a later version may have written its hint before ours)."""
        while True:
            self.storage.put(hint_key(name), str(version).encode())
            newest = version
            while self.storage.exists(metadata_key(name, newest + 1)):
                newest += 1
            if newest == version:
                return
            version = newest

    def _read_hint(self, name: str) -> int:
        try:
            text = self.storage.get(hint_key(name)).decode().strip()
        except (LakeError, UnicodeDecodeError):  # missing or unreadable: list instead
            return 0
        return int(text) if text.isdigit() else 0

    def _remember(self, name: str, table: Table, manifest: Manifest) -> None:
        """Keep the newest mirrored table of ``name`` for its next sync (bounded: the
        ``REMEMBERED`` most recently synced datasets)."""
        with self._guard:
            self._last.pop(name, None)
            self._last[name] = (table, manifest)
            while len(self._last) > REMEMBERED:
                self._last.pop(next(iter(self._last)))

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())
