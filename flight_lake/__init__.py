"""flight_lake: a small lakehouse served over Apache Arrow Flight."""

from __future__ import annotations

from flight_lake_client.protocol import VERSION

__version__ = VERSION  # one source: the distribution's version
SERVICE_NAME = "flight_lake"
