"""flight_lake: a small lakehouse served over Apache Arrow Flight."""

from __future__ import annotations

__version__ = "0.1.0"
SERVICE_NAME = "flight_lake"
