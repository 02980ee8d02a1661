"""flight_lake_client: a thin, typed Python client for a flight_lake server.

    from flight_lake_client import connect

    with connect("grpc://127.0.0.1:8815") as lake:
        lake.ingest_csv("people.csv", name="people")
        frame = lake.sql_polars("SELECT city, count(*) AS n FROM people GROUP BY city")

It speaks plain Arrow Flight (``pyarrow.flight``) with the JSON commands of the protocol and
needs nothing from the server package. Server errors arrive as the exceptions in
``flight_lake_client.errors`` (``NotFound``, ``InvalidInput``, ``Conflict``, ``TooLarge``…).
"""

from __future__ import annotations

from flight_lake_client.client import (
    CHUNK_SCHEMA,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_SERVER,
    FlightLakeClient,
    ProgressCallback,
    connect,
)
from flight_lake_client.errors import (
    Busy,
    Cancelled,
    Conflict,
    InvalidInput,
    LakeError,
    NotAcceptable,
    NotFound,
    PermissionDenied,
    QueryTimeout,
    StorageError,
    TooLarge,
    TooManyPartitions,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from flight_lake_client.manifest import Column, DataObject, Manifest
from flight_lake_client.protocol import VERSION

__version__ = VERSION

__all__ = [
    "CHUNK_SCHEMA",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_SERVER",
    "Busy",
    "Cancelled",
    "Column",
    "Conflict",
    "DataObject",
    "FlightLakeClient",
    "InvalidInput",
    "LakeError",
    "Manifest",
    "NotAcceptable",
    "NotFound",
    "PermissionDenied",
    "ProgressCallback",
    "QueryTimeout",
    "StorageError",
    "TooLarge",
    "TooManyPartitions",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "__version__",
    "connect",
]
