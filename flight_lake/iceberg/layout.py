"""Where each dataset's Iceberg table lives: the Hadoop catalog's file-system layout.

Warehouse ``<storage root>/_iceberg``, namespace ``lake``, one table per dataset::

    _iceberg/lake/<name>/metadata/v<N>.metadata.json   (N = the manifest version it mirrors)
    _iceberg/lake/<name>/metadata/version-hint.text     (the newest N)
    _iceberg/lake/<name>/metadata/*.avro                (manifest lists and manifests)

Spark's Iceberg ``type=hadoop`` catalog, pyiceberg's ``StaticTable``, DuckDB's
``iceberg_scan``, polars and Daft read it without a catalog server; the data files are the
dataset's own objects under ``datasets/`` (docs/adr/0008-iceberg-tables.md).
"""

from __future__ import annotations

import re

from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage

WAREHOUSE = "_iceberg"
NAMESPACE = "lake"
HINT = "version-hint.text"
METADATA_FILE = re.compile(r"^v(\d+)\.metadata\.json$")


def table_key(name: str) -> str:
    return f"{WAREHOUSE}/{NAMESPACE}/{name}"


def metadata_key(name: str, version: int) -> str:
    return f"{table_key(name)}/metadata/v{version}.metadata.json"


def hint_key(name: str) -> str:
    return f"{table_key(name)}/metadata/{HINT}"


def table_url(storage: Storage, name: str) -> str:
    """The table's location as readers take it (a path, or ``s3://bucket/prefix/…``)."""
    return storage.url(table_key(name))


def file_io_properties(settings: StorageSettings, *, writing: bool = False) -> dict[str, str]:
    """pyiceberg's FileIO properties for this storage (S3 endpoint, region and keys);
    ``writing``: for the mirror's own commits, through s3fs, which puts a small file (a
    manifest, a manifest list) in one request where pyarrow's S3 stream starts a multipart
    upload of three."""
    if not settings.uri.startswith("s3://"):
        return {}
    properties = {"s3.region": settings.region}
    if writing:
        properties["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"
    if settings.endpoint_url:
        properties["s3.endpoint"] = settings.endpoint_url
    if settings.access_key_id is not None:
        properties["s3.access-key-id"] = settings.access_key_id.get_secret_value()
    if settings.secret_access_key is not None:
        properties["s3.secret-access-key"] = settings.secret_access_key.get_secret_value()
    return properties
