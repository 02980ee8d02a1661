"""The HTTP adapter: the lake's operations over plain HTTP for curl users (``/v1``)."""

from __future__ import annotations

from flight_lake.http.app import create_app
from flight_lake.http.server import HttpServer

__all__ = ["HttpServer", "create_app"]
