"""The lake: every service built once from the settings, shared by every front end.

Lifecycle (explicit; nothing starts in a constructor)::

    lake = Lake(settings)      # builds the services: no thread, no view yet
    lake.start()               # views, watchdog, cache worker, garbage collection,
                               # the catalog refresh (other replicas' commits)
    lake.drain()               # refuse new work (front ends check lake.check_serving())
    lake.close()               # stop the threads and the query engine

``with Lake(settings) as lake:`` starts and closes it; ``Lake.open(settings)`` is
``Lake(settings).start()``. The states are ``built → serving → draining → closed``.

Reading — the one read path every front end (Flight, HTTP, Flight SQL) calls:

- ``lake.describe(sql) -> pa.Schema``: the schema ``read`` will answer with (GetFlightInfo);
  cheap when repeated, cached by the SQL's digest until a dataset changes.
- ``lake.read(sql, *, timeout=None, read_id=None) -> Result``: checks the statement (one
  read-only SELECT, else ``InvalidInput``/``PermissionDenied``), decides from DuckDB's parse
  whether the stored objects answer it as they are (exactly ``SELECT * FROM <dataset>``) or
  DuckDB runs it, and starts it. ``timeout`` (seconds, at most ``query.timeout_seconds``,
  the default) bounds the whole read in both cases. The ``Result`` has ``schema``,
  ``batches()`` (raising ``LakeError``s: ``QueryTimeout``, ``Cancelled``, …), ``table``
  (the whole answer when it is already in memory, so Flight can stream it from C++) and
  ``read_id``; it must be closed (``with result:``), also when not read to the end.
- ``lake.read_object(dataset, key, *, timeout=None, read_id=None) -> Result``: one data
  object of a dataset's current version (Flight's per-object tickets).
- ``lake.cancel(read_id) -> bool``: stop a running read; its batches then raise
  ``Cancelled``. Pass your own ``read_id`` to ``read`` (e.g. one put in a ticket) to cancel
  it later from another call (Flight SQL's CancelFlightInfo); False if it is not running.

Concurrency: every method is thread-safe. State and its owners — ``_state`` under
``_state_lock`` (here); running reads under ``Reads._lock``; views, versions and cached
schemas in ``QueryEngine`` (its lock order is in :mod:`flight_lake.query`); cached copies
in ``TableCache._wake``; decoded objects in ``ObjectCache._lock``; guard verdicts in
``SqlGuard._lock``; deadlines in ``Watchdog._wake``. Lock order across them: catalog
(commit) → ``QueryEngine._ddl_lock`` → ``TableCache._wake`` → ``Watchdog._wake``; every
other lock is taken alone, with nothing called under it.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa
import structlog

from flight_lake import SERVICE_NAME, __version__
from flight_lake.cache_budget import CacheBudget
from flight_lake.catalog import Catalog, Manifest
from flight_lake.errors import Unavailable
from flight_lake.iceberg.tables import IcebergTables
from flight_lake.ingest import IngestService
from flight_lake.object_cache import ObjectCache
from flight_lake.query import QueryEngine
from flight_lake.reads import Reads
from flight_lake.result import Result
from flight_lake.scan import ScanService
from flight_lake.settings import Settings
from flight_lake.spark_engine import SparkEngine
from flight_lake.storage import Storage

log = structlog.get_logger()

State = Literal["built", "serving", "draining", "closed"]


class Lake:
    """The composition root: storage, catalog, ingest, query, scans and the read path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage.from_settings(settings.storage)
        self.storage.prepare(create=settings.storage.create_bucket)  # fail fast, one line
        self.catalog = Catalog(self.storage)
        self.cache = CacheBudget(settings.cache.max_bytes)  # one budget for both caches
        self.query = QueryEngine(self.storage, self.catalog, settings, self.cache)
        self.ingest = IngestService(self.storage, self.catalog, settings)
        self.objects = ObjectCache(self.storage, self.cache)
        self.scans = ScanService(self.catalog, self.objects)
        self.iceberg = IcebergTables(self.storage, self.catalog, settings.storage,
                                     settings.iceberg.snapshots_kept)
        self.spark = (SparkEngine(self.storage, self.catalog, settings)
                      if settings.query.engine == "spark" else None)
        self.reads = Reads(self.catalog, self.query, self.scans, settings.query.timeout_seconds,
                           settings.query.max_open_results, self.spark)
        self._state: State = "built"
        self._state_lock = threading.Lock()
        self._gc: threading.Thread | None = None
        self._refresher: threading.Thread | None = None
        self._stopped = threading.Event()
        self._checked_at = time.monotonic()  # the last change check that answered

    @classmethod
    def open(cls, settings: Settings) -> Lake:
        """A started lake (``Lake(settings).start()``)."""
        return cls(settings).start()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Lake:
        with self._state_lock:
            if self._state != "built":
                return self
            self._state = "serving"
        self.catalog.subscribe(self._forget_superseded)
        self.query.start()
        # Last: views first, then the mirror; only this server's commits (the committing
        # server mirrors; other servers' change checks must not all redo it).
        if self.settings.iceberg.enabled:
            self.catalog.subscribe(self.iceberg.on_commit, remote=False)
        if self.spark is not None:
            self.spark.start()
        self._gc = threading.Thread(target=self._collect_garbage, name="lake-gc", daemon=True)
        self._gc.start()
        if self.settings.catalog.refresh_seconds > 0:
            self._refresher = threading.Thread(target=self._follow_replicas,
                                               name="catalog-refresh", daemon=True)
            self._refresher.start()
        return self

    def drain(self) -> None:
        """Refuse new work from now on; reads and ingests already running go on."""
        with self._state_lock:
            if self._state in ("built", "serving"):
                self._state = "draining"

    def close(self) -> None:
        """Stop serving: new queries get ``Unavailable``; streams already started end."""
        with self._state_lock:
            if self._state == "closed":
                return
            self._state = "closed"
        self._stopped.set()
        if self._refresher is not None:
            self._refresher.join(timeout=30)
        self.query.close()
        if self.spark is not None:
            self.spark.close()

    def __enter__(self) -> Lake:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def state(self) -> State:
        with self._state_lock:
            return self._state

    @property
    def draining(self) -> bool:
        """True once the lake no longer takes new work (draining or closed)."""
        return self.state in ("draining", "closed")

    def check_serving(self) -> None:
        """Raise ``Unavailable`` unless the lake takes new work; front ends call it first."""
        state = self.state
        if state != "serving":
            detail = "is shutting down" if state != "built" else "has not started"
            raise Unavailable(f"the server {detail}")

    def _forget_superseded(self, manifest: Manifest) -> None:
        """Catalog listener: decoded objects of a superseded version leave the cache."""
        self.objects.forget(manifest.name, {o.key for o in manifest.objects})

    def _collect_garbage(self) -> None:
        """Remove what crashed ingests left behind; never fatal to the server."""
        try:
            spool = self.ingest.collect_spool()
            folders = self.catalog.collect_garbage(self.settings.ingest.gc_grace_seconds)
        except Exception as exc:  # a failed clean-up must not stop serving
            log.warning("garbage_collection_failed", error=str(exc))
        else:
            log.info("garbage_collection_done", spool_files=len(spool), folders=len(folders))

    def _follow_replicas(self) -> None:
        """Every ``catalog.refresh_seconds``, take the commits other servers made.

        At a fixed rate: a slow check does not push the next one back, so another server's
        commit waits at most about one interval plus one check.
        """
        interval = self.settings.catalog.refresh_seconds
        due = time.monotonic() + interval
        while not self._stopped.wait(max(due - time.monotonic(), 0.0)):
            due = max(due + interval, time.monotonic())
            try:
                self.catalog.refresh()
                self._checked_at = time.monotonic()
            except Exception as exc:  # storage hiccup: the next interval tries again
                log.warning("catalog_refresh_failed", error=str(exc))

    # -- reading (see the module docstring) --------------------------------------------

    def describe(self, sql: str) -> pa.Schema:
        return self.reads.describe(sql)

    def read(self, sql: str, *, timeout: float | None = None,
             read_id: str | None = None) -> Result:
        return self.reads.read(sql, timeout=timeout, read_id=read_id)

    def read_object(self, dataset: str, key: str, *, timeout: float | None = None,
                    read_id: str | None = None) -> Result:
        return self.reads.read_object(dataset, key, timeout=timeout, read_id=read_id)

    def cancel(self, read_id: str) -> bool:
        return self.reads.cancel(read_id)

    # -- health ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What an operator wants at a glance; the same body on Flight and HTTP."""
        storage = {"backend": self.storage.backend, "uri": self.storage.uri,
                   **self.storage.reachability()}
        status = "ok" if storage["status"] == "ok" else "storage_unreachable"
        return {
            "status": status if self.state == "serving" else "draining",
            "service": SERVICE_NAME,
            "version": __version__,
            "storage": storage,
            "datasets": len(self.catalog.list()),
            "ingests_running": self.ingest.active,
            "transactions_open": self.ingest.staging.count,
            "max_upload_bytes": self.settings.ingest.max_upload_bytes,
            "max_concurrent_ingests": self.settings.ingest.max_concurrent_ingests,
            "max_concurrent_ingests_per_client":
                self.settings.ingest.max_concurrent_ingests_per_client,
            "reads_running": self.reads.running(),
            "cache": self.cache_status(),
            "replicas": self.replica_status(),
        }

    def replica_status(self) -> dict[str, Any]:
        """How this server follows the others over its storage, for ``health``:
        ``{"refresh_seconds", "checked_seconds_ago", "peers"}`` (``checked_seconds_ago`` is
        null when the change check is off; it grows while the check keeps failing)."""
        refresh = self.settings.catalog.refresh_seconds
        return {
            "refresh_seconds": refresh,
            "checked_seconds_ago": round(time.monotonic() - self._checked_at, 3)
            if refresh > 0 else None,
            "peers": list(self.settings.cluster.peers),
        }

    def cache_status(self) -> dict[str, Any]:
        """The one cache budget and what each dataset holds in it, for ``health``.

        ``{"max_bytes", "used_bytes", "datasets": {name: {"arrow_bytes", "duckdb_bytes"}},
        "arrow": {"bytes", "objects", "hits", "misses"}, "duckdb": {"max_bytes",
        "used_bytes", "datasets": {name: {"version", "bytes"}}}}``: decoded objects for
        whole scans, and DuckDB copies (at most ``duckdb.max_bytes``, half of DuckDB's
        memory limit) for SQL.
        """
        arrow = self.objects.stats()
        copies = self.query.cache_status()
        return {
            **self.cache.status(),
            "arrow": {key: arrow[key] for key in ("bytes", "objects", "hits", "misses")},
            "duckdb": {"max_bytes": copies["budget_bytes"], "used_bytes": copies["used_bytes"],
                       "datasets": copies["datasets"]},
        }
