"""The catalog: one manifest per dataset version, kept as Parquet in the same storage.

``_catalog/manifests/<name>/<version>.parquet`` holds one row describing that version:
its schema, its data objects and their row counts. A version is committed with a
create-only write, so of two writers racing for the same version exactly one wins; the
other re-reads the new latest version and tries again (or reports a conflict). The
in-memory view is rebuilt from storage at start-up, so the catalog survives restarts.

Replicas: several servers over one storage each keep their own view. After every commit
the committing server rewrites ``_catalog/pulse`` (a few bytes, unique per commit) and
updates its own view at once (read-your-writes). ``refresh()``, called every
``catalog.refresh_seconds`` by the lake, reads the pulse; only when it changed (and on
every ``FULL_CHECK_EVERY``-th call, in case a server died between its two writes) does it
list the manifests and read those of datasets with a newer version. Listeners hear of
those as of local commits, so views and caches follow (docs/SCALE_OUT.md).

Modes: ``create`` makes a dataset (or, with the same schema fingerprint, re-registers it
idempotently: same ``dataset_id``, the new objects become the current version; another
fingerprint is a conflict); ``replace`` swaps the whole object set in one commit; ``append``
adds objects to the current set and needs the same schema and layout (``layout.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from pydantic import BaseModel, ConfigDict, Field

from flight_lake.errors import Conflict, InvalidInput, LakeError, NotFound
from flight_lake.layout import Layout
from flight_lake.storage import Storage, check_key
from flight_lake_client.protocol import DATASET_NAME, MODES, Mode

log = structlog.get_logger()

NAME_PATTERN = re.compile(DATASET_NAME)
MANIFESTS = "_catalog/manifests"
DATASETS = "datasets"
COMMIT_ATTEMPTS = 32
PULSE = "_catalog/pulse"  # rewritten after every commit: the replicas' change check
FULL_CHECK_EVERY = 30  # refreshes: list the manifests even if the pulse did not change


class DataObject(BaseModel):
    key: str
    size: int
    row_count: int


class ColumnInfo(BaseModel):
    name: str
    type: str
    nullable: bool = True


class ReplacedVersion(BaseModel):
    """The version a ``create`` or ``replace`` swapped out: what the dataset held before."""

    version: int
    row_count: int
    size_bytes: int


class Manifest(BaseModel):
    """One committed version of a dataset (the JSON the front ends return).

    ``content_digest`` is ``sha256:<hex>`` of the upload that made this version's whole
    content (the CSV text after decompression, or the Arrow stream), so a retried upload of
    the same content is recognised; it is null after an append or a register. ``replaced``
    names the version a ``create``/``replace`` swapped out. ``layout`` is how the objects
    are partitioned and sorted (empty lists: flat). ``unchanged`` is true only in
    an ingest answer that changed nothing (the same content again); it is never stored.
    """

    # Every field is in every answer, defaults included: the OpenAPI document says so.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    dataset_id: str
    name: str
    version: int
    schema_fingerprint: str
    columns: list[ColumnInfo] = Field(serialization_alias="schema")
    objects: list[DataObject]
    row_count: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime
    content_digest: str | None = None
    replaced: ReplacedVersion | None = None
    layout: Layout = Field(default_factory=Layout)
    unchanged: bool = False
    schema_ipc: bytes = Field(default=b"", exclude=True, repr=False)

    def arrow_schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(self.schema_ipc))

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def check_name(name: str) -> str:
    """Dataset names are SQL identifiers; anything else is refused before storage."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"invalid dataset name {name!r}: use lower-case letters, digits and _ "
            f"(must match {DATASET_NAME})"
        )
    return name


def check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise InvalidInput(f"invalid mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def schema_fingerprint(schema: pa.Schema) -> str:
    """A stable digest of column names, types and nullability (not metadata)."""
    canonical = "\n".join(f"{f.name}\t{f.type}\t{f.nullable}" for f in schema)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def new_version_id() -> str:
    """A fresh, sortable folder name for one ingest's data objects."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def _version_time(version_id: str) -> float | None:
    """The creation time encoded in a ``new_version_id`` folder name, if it is one."""
    try:
        stamp = datetime.strptime(version_id.split("-", 1)[0], "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


LEASE_SECONDS = 120.0  # an ingest renews its lease every third of this


def lease_key(prefix: str) -> str:
    """The lease object a running ingest keeps fresh in its version folder."""
    return f"{prefix}/_lease"


def data_prefix(name: str, version_id: str) -> str:
    return f"{DATASETS}/{check_name(name)}/{version_id}"


class Catalog:
    """Datasets by name, each with its latest committed manifest."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._latest: dict[str, Manifest] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._listeners: builtins.list[Callable[[Manifest], None]] = []
        self._remote_listeners: builtins.list[Callable[[Manifest], None]] = []
        self._pulse_seen: bytes | None = None  # refresh() is called from one thread only
        self._refreshes = 0
        self.reload()

    # -- reading ---------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the in-memory view from the manifests in storage."""
        self._pulse_seen = self._read_pulse()  # before listing: a commit after it shows
        latest = {}
        for name in self.storage.list_children(MANIFESTS):
            if NAME_PATTERN.match(name):
                manifest = self._read_latest(name)
                if manifest is not None:
                    latest[name] = manifest
        with self._guard:
            self._latest = latest
        log.info("catalog_loaded", datasets=len(latest), storage=self.storage.uri)

    def list(self) -> builtins.list[Manifest]:
        with self._guard:
            return sorted(self._latest.values(), key=lambda manifest: manifest.name)

    def get(self, name: str) -> Manifest:
        check_name(name)
        with self._guard:
            manifest = self._latest.get(name)
        if manifest is None:
            raise NotFound(f"unknown dataset: {name}")
        return manifest

    def history(self, name: str) -> builtins.list[int]:
        """Every committed version number of ``name``, oldest first."""
        return [
            int(entry.removesuffix(".parquet"))
            for entry in self.storage.list_children(f"{MANIFESTS}/{check_name(name)}")
            if entry.endswith(".parquet") and entry.removesuffix(".parquet").isdigit()
        ]

    def manifest(self, name: str, version: int) -> Manifest:
        """Version ``version`` of ``name`` as it was committed (``NotFound`` if none)."""
        return _decode(self.storage.get(_manifest_key(check_name(name), version)))

    def subscribe(self, listener: Callable[[Manifest], None], *, remote: bool = True) -> None:
        """Call ``listener(manifest)`` after every commit (the query engine refreshes views),
        this server's or, once ``refresh`` finds it, another server's; with
        ``remote=False`` only after this server's own commits (work the committing server
        does once for everyone)."""
        self._listeners.append(listener)
        if remote:
            self._remote_listeners.append(listener)

    # -- other servers' commits --------------------------------------------------------

    def refresh(self) -> builtins.list[Manifest]:
        """The change check: the manifests other servers committed since the last one.

        One small read (the pulse) when nothing changed; else one listing of the manifests
        and one read per dataset that has a newer version. Listeners hear of each.
        """
        self._refreshes += 1
        pulse = self._read_pulse()
        if pulse == self._pulse_seen and self._refreshes % FULL_CHECK_EVERY:
            return []
        self._pulse_seen = pulse  # before listing: a commit after it changes the pulse again
        newest: dict[str, int] = {}
        for found in self.storage.list(MANIFESTS):
            name, version = _manifest_version(found.key)
            if version > newest.get(name, 0):
                newest[name] = version
        newer = []
        for name, version in sorted(newest.items()):
            known = self._peek(name)
            if known is None or known.version < version:
                newer.append(_decode(self.storage.get(_manifest_key(name, version))))
        published = self._publish(newer)
        if published:
            log.info("catalog_refreshed", datasets=len(published),
                     versions={m.name: m.version for m in published})
        return published

    def refresh_dataset(self, name: str) -> Manifest | None:
        """``name``'s latest version as stored now (None if it has none): one listing, and a
        read when it is newer than this server knows. Before a write, and for a ticket that
        names an object this server has not heard of, another server may have committed."""
        check_name(name)
        versions = self.history(name)
        known = self._peek(name)
        if not versions or (known is not None and known.version >= versions[-1]):
            return known
        self._publish([_decode(self.storage.get(_manifest_key(name, versions[-1])))])
        return self._peek(name)

    # -- writing ---------------------------------------------------------------------

    def check_writable(self, name: str, mode: Mode, schema: pa.Schema | None = None,
                       layout: Layout | None = None) -> Layout:
        """Fail fast, before any data is written, if a commit could not succeed; return the
        layout to write with (``layout``, or on append the dataset's when it is ``None``)."""
        check_name(name)
        check_mode(mode)
        current = self.refresh_dataset(name)  # another server may have committed since
        if mode == "append" and current is None:
            raise NotFound(f"cannot append to unknown dataset: {name}")
        if schema is not None and current is not None:
            self._check_schema(current, mode, schema_fingerprint(schema))
        if mode != "append" or current is None:
            return layout if layout is not None else Layout()
        if layout is not None:
            _check_same_layout(current, layout)
        return current.layout

    def commit(
        self, name: str, mode: Mode, schema: pa.Schema, objects: Iterable[DataObject],
        content_digest: str | None = None, layout: Layout | None = None,
    ) -> Manifest:
        """Commit a new version of ``name`` atomically and return its manifest.

        ``layout`` is the one the objects were written with (default: flat); an append's
        must be the dataset's at the time of the commit.
        """
        layout = layout if layout is not None else Layout()
        check_name(name)
        check_mode(mode)
        objects = list(objects)
        _check_unique([o.key for o in objects])
        fingerprint = schema_fingerprint(schema)
        with self._lock_for(name):
            # First from the version this server knows (``check_writable`` has just looked):
            # versions are contiguous, so if another was committed since, the create-only
            # put fails, and every later try (or a refusal) starts from the stored latest.
            current = self._peek(name)
            for attempt in range(COMMIT_ATTEMPTS):
                try:
                    manifest = self._next_manifest(current, name, mode, schema, fingerprint,
                                                   objects, layout)
                except LakeError:
                    if attempt:
                        raise
                    current = self._read_latest(name)
                    continue
                if mode != "append":
                    manifest.content_digest = content_digest
                if self.storage.put_if_absent(_manifest_key(name, manifest.version),
                                              _encode(manifest)):
                    break
                log.info("catalog_commit_retry", dataset=name, version=manifest.version)
                current = self._read_latest(name)
            else:
                raise Conflict(f"dataset {name} is changing too fast; try again")
        self._beat()
        with self._guard:
            known = self._latest.get(name)
            if known is None or known.version < manifest.version:  # refresh() may be ahead
                self._latest[name] = manifest
        replaced = manifest.replaced
        log.info("catalog_committed", dataset=name, version=manifest.version, mode=mode,
                 rows=manifest.row_count, objects=len(manifest.objects),
                 replaced_version=replaced.version if replaced else None,
                 replaced_rows=replaced.row_count if replaced else None)
        for listener in self._listeners:
            listener(manifest)
        return manifest

    def register(self, name: str, keys: Iterable[str], mode: Mode = "create") -> Manifest:
        """Commit Parquet objects already in storage under ``datasets/<name>/``.

        The schema and row counts are read from the objects' footers, not trusted from
        the caller; every object must share one schema. Keys must be distinct, under the
        dataset's own prefix, referenced by no other dataset, and (on append) not already
        in the current version.
        """
        check_name(name)
        keys = list(keys)
        if not keys:
            raise InvalidInput("register needs at least one object key")
        _check_unique(keys)
        self._check_unowned(name, keys)
        current = self._peek(name)
        if mode == "append" and current is not None and not current.layout.flat:
            raise Conflict(f"cannot register objects into {name}: its layout is "
                           f"{current.layout.describe()} and registered objects keep their own "
                           "order (register with mode create or replace: a flat dataset)")
        schema: pa.Schema | None = None
        objects: builtins.list[DataObject] = []
        for key in keys:
            check_key(key)
            if not key.startswith(f"{DATASETS}/{name}/") or not key.endswith(".parquet"):
                raise InvalidInput(f"object {key!r} must be a .parquet under {DATASETS}/{name}/")
            with self.storage.open_read(key) as handle:
                try:
                    metadata = pq.ParquetFile(handle).metadata
                except (pa.ArrowInvalid, OSError) as exc:
                    raise InvalidInput(f"object {key!r} is not a Parquet file: {exc}") from exc
                object_schema = metadata.schema.to_arrow_schema()
            if schema is None:
                schema = object_schema
            elif schema_fingerprint(object_schema) != schema_fingerprint(schema):
                raise InvalidInput(f"object {key!r} has a different schema from {keys[0]!r}")
            objects.append(DataObject(key=key, size=self.storage.size(key),
                                      row_count=metadata.num_rows))
        assert schema is not None
        return self.commit(name, mode, schema, objects)

    def collect_garbage(self, grace_seconds: float,
                        lease_seconds: float = LEASE_SECONDS) -> builtins.list[str]:
        """Delete data folders no manifest references, older than ``grace_seconds``.

        Only folders named by ``new_version_id`` are considered (their name carries their
        creation time); folders an operator placed for ``register`` are left alone, and so
        is a folder whose ingest lease (``_lease``, renewed while the ingest runs, on any
        server over this storage) is younger than ``lease_seconds``, whatever the grace.
        Temporary files a crashed commit left under the manifests, older than the grace,
        go too (the storage's ``collect_temporaries``).
        """
        cutoff = datetime.now(UTC).timestamp() - grace_seconds
        self.storage.collect_temporaries(MANIFESTS, cutoff)
        removed: builtins.list[str] = []
        for name in self.storage.list_children(DATASETS):
            if not NAME_PATTERN.match(name):
                continue
            referenced, seen = self._referenced_folders(name)
            for folder in self.storage.list_children(f"{DATASETS}/{name}"):
                created = _version_time(folder)
                if folder in referenced or created is None or created > cutoff:
                    continue
                if self._leased(f"{DATASETS}/{name}/{folder}", lease_seconds):
                    continue
                # An ingest removes its lease only after its commit: a commit made since
                # the manifests were read above references the folder now.
                newly, seen = self._referenced_folders(name, after=seen)
                referenced |= newly
                if folder in referenced:
                    continue
                self.storage.delete_prefix(f"{DATASETS}/{name}/{folder}")
                removed.append(f"{DATASETS}/{name}/{folder}")
        if removed:
            log.info("catalog_garbage_collected", folders=len(removed))
        return removed

    # -- internals -------------------------------------------------------------------

    def _leased(self, prefix: str, lease_seconds: float) -> bool:
        try:
            renewed = float(self.storage.get(lease_key(prefix)).decode())
        except (NotFound, ValueError, UnicodeDecodeError):
            return False
        return datetime.now(UTC).timestamp() - renewed < lease_seconds

    def _check_unowned(self, name: str, keys: builtins.list[str]) -> None:
        """Refuse keys that another dataset's current version references."""
        wanted = set(keys)
        for manifest in self.list():
            if manifest.name == name:
                continue
            for data_object in manifest.objects:
                if data_object.key in wanted:
                    raise Conflict(f"object {data_object.key!r} belongs to dataset "
                                   f"{manifest.name}; register only objects of {name}")

    def _referenced_folders(self, name: str, after: int = 0) -> tuple[set[str], int]:
        """Data folders the versions of ``name`` after ``after`` refer to, and the last
        version read."""
        folders: set[str] = set()
        for version in self.history(name):
            if version > after:
                manifest = _decode(self.storage.get(_manifest_key(name, version)))
                folders.update(o.key.split("/")[2] for o in manifest.objects)
                after = version
        return folders, after

    def _publish(self, manifests: Iterable[Manifest]) -> builtins.list[Manifest]:
        """Take each manifest newer than the one known; tell the listeners (no lock held)."""
        published = []
        with self._guard:
            for manifest in manifests:
                known = self._latest.get(manifest.name)
                if known is None or known.version < manifest.version:
                    self._latest[manifest.name] = manifest
                    published.append(manifest)
        for manifest in published:
            for listener in self._remote_listeners:
                listener(manifest)
        return published

    def _beat(self) -> None:
        """Rewrite the pulse after a commit so other servers look; never fails the commit."""
        try:
            self.storage.put(PULSE, uuid.uuid4().hex.encode())
        except LakeError as exc:  # they find the commit on their next full check
            log.warning("catalog_pulse_failed", error=exc.detail)

    def _read_pulse(self) -> bytes:
        with contextlib.suppress(NotFound):
            return self.storage.get(PULSE)
        return b""

    def _peek(self, name: str) -> Manifest | None:
        with self._guard:
            return self._latest.get(name)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _read_latest(self, name: str) -> Manifest | None:
        versions = self.history(name)
        if not versions:
            return None
        return _decode(self.storage.get(_manifest_key(name, versions[-1])))

    @staticmethod
    def _check_schema(current: Manifest, mode: Mode, fingerprint: str) -> None:
        if mode == "create" and current.schema_fingerprint != fingerprint:
            raise Conflict(
                f"dataset {current.name} already exists with another schema "
                "(use mode=replace to swap it)"
            )
        if mode == "append" and current.schema_fingerprint != fingerprint:
            raise Conflict(f"cannot append to {current.name}: the schema does not match")

    def _next_manifest(
        self,
        current: Manifest | None,
        name: str,
        mode: Mode,
        schema: pa.Schema,
        fingerprint: str,
        objects: builtins.list[DataObject],
        layout: Layout,
    ) -> Manifest:
        now = datetime.now(UTC)
        if current is None:
            if mode == "append":
                raise NotFound(f"cannot append to unknown dataset: {name}")
            dataset_id, version, created_at, kept = uuid.uuid4().hex, 1, now, []
        else:
            self._check_schema(current, mode, fingerprint)
            dataset_id, version, created_at = current.dataset_id, current.version + 1, \
                current.created_at
            kept = current.objects if mode == "append" else []
            if mode == "append":
                _check_same_layout(current, layout)
        held = {o.key for o in kept}
        again = [o.key for o in objects if o.key in held]
        if again:
            raise Conflict(f"cannot append {again[0]!r} to {name}: version {version - 1} "
                           "already holds it (it would count its rows twice)")
        replaced = None
        if current is not None and mode != "append":
            replaced = ReplacedVersion(version=current.version, row_count=current.row_count,
                                       size_bytes=current.size_bytes)
        all_objects = [*kept, *objects]
        return Manifest(
            dataset_id=dataset_id,
            name=name,
            version=version,
            schema_fingerprint=fingerprint,
            columns=[ColumnInfo(name=f.name, type=str(f.type), nullable=f.nullable)
                     for f in schema],
            objects=all_objects,
            row_count=sum(o.row_count for o in all_objects),
            size_bytes=sum(o.size for o in all_objects),
            created_at=created_at,
            updated_at=now,
            replaced=replaced,
            layout=layout,
            schema_ipc=schema.serialize().to_pybytes(),
        )


def _check_same_layout(current: Manifest, layout: Layout) -> None:
    if layout != current.layout:
        raise Conflict(f"cannot append to {current.name} with {layout.describe()}: its layout "
                       f"is {current.layout.describe()} (leave the options out to use it, or "
                       "replace the dataset to change it)")


def _check_unique(keys: Iterable[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InvalidInput(f"object {key!r} is listed more than once")
        seen.add(key)


def _manifest_key(name: str, version: int) -> str:
    return f"{MANIFESTS}/{name}/{version:010d}.parquet"


def _manifest_version(key: str) -> tuple[str, int]:
    """``(name, version)`` of a manifest's key; version 0 for anything else there."""
    parts = key.split("/")
    if len(parts) != 4 or not NAME_PATTERN.match(parts[2]):
        return "", 0
    stem = parts[3].removesuffix(".parquet")
    return parts[2], int(stem) if stem.isdigit() and stem != parts[3] else 0


_MANIFEST_SCHEMA = pa.schema([
    ("dataset_id", pa.string()),
    ("name", pa.string()),
    ("version", pa.int64()),
    ("schema_fingerprint", pa.string()),
    ("schema_ipc", pa.binary()),
    ("objects", pa.list_(pa.struct([("key", pa.string()), ("size", pa.int64()),
                                    ("row_count", pa.int64())]))),
    ("row_count", pa.int64()),
    ("size_bytes", pa.int64()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("updated_at", pa.timestamp("us", tz="UTC")),
    ("content_digest", pa.string()),
    ("replaced", pa.struct([("version", pa.int64()), ("row_count", pa.int64()),
                            ("size_bytes", pa.int64())])),
    ("layout", pa.struct([("partition_by", pa.list_(pa.string())),
                          ("sort_by", pa.list_(pa.string()))])),
])


def _encode(manifest: Manifest) -> bytes:
    row = manifest.model_dump(exclude={"columns", "unchanged"})
    row["schema_ipc"] = manifest.schema_ipc
    table = pa.Table.from_pylist([row], schema=_MANIFEST_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _decode(data: bytes) -> Manifest:
    row = pq.read_table(io.BytesIO(data)).to_pylist()[0]
    if row.get("layout") is None:  # written before layouts existed: flat
        row.pop("layout", None)
    schema = pa.ipc.read_schema(pa.py_buffer(row["schema_ipc"]))
    row["columns"] = [ColumnInfo(name=f.name, type=str(f.type), nullable=f.nullable)
                      for f in schema]
    return Manifest.model_validate(row)
