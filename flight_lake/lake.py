"""The lake: every service built once from the settings, shared by both front ends."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from flight_lake import SERVICE_NAME, __version__
from flight_lake.catalog import Catalog
from flight_lake.ingest import IngestService
from flight_lake.object_cache import ObjectCache
from flight_lake.query import QueryEngine
from flight_lake.scan import ScanService
from flight_lake.settings import Settings
from flight_lake.storage import Storage

log = structlog.get_logger()


@dataclass
class Lake:
    settings: Settings
    storage: Storage
    catalog: Catalog
    query: QueryEngine
    ingest: IngestService
    scans: ScanService
    draining: bool = field(default=False)

    @classmethod
    def open(cls, settings: Settings) -> Lake:
        storage = Storage.from_settings(settings.storage)
        catalog = Catalog(storage)
        query = QueryEngine(storage, catalog, settings)
        ingest = IngestService(storage, catalog, settings)
        objects = ObjectCache(storage, settings.flight.object_cache_bytes)
        scans = ScanService(catalog, query, objects)
        lake = cls(settings, storage, catalog, query, ingest, scans)
        threading.Thread(target=lake._collect_garbage, name="lake-gc", daemon=True).start()
        return lake

    def _collect_garbage(self) -> None:
        """Remove what crashed ingests left behind; never fatal to the server."""
        try:
            self.catalog.collect_garbage(self.settings.ingest.gc_grace_seconds)
        except Exception as exc:  # a failed clean-up must not stop serving
            log.warning("garbage_collection_failed", error=str(exc))

    def health(self) -> dict[str, Any]:
        """What an operator wants at a glance; the same body on Flight and HTTP."""
        return {
            "status": "draining" if self.draining else "ok",
            "service": SERVICE_NAME,
            "version": __version__,
            "storage": {"backend": self.storage.backend, "uri": self.storage.uri},
            "datasets": len(self.catalog.list()),
            "ingests_running": self.ingest.active,
            "object_cache": self.scans.objects.stats(),
            "query_cache": self.query.cache_status(),
        }

    def close(self) -> None:
        self.query.close()
