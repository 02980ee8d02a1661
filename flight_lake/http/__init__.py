"""The HTTP adapter: the lake's operations over plain HTTP for curl users (``/v1``)."""

from __future__ import annotations

from flight_lake.http.listener import HttpServer
from flight_lake.http.routes import create_app

__all__ = ["HttpServer", "create_app"]
