"""Object storage under one root: a local folder (default) or an S3 bucket and prefix.

The protocol and the shared fsspec code are in :mod:`flight_lake.storage.base`; each backend
is one class in its own module, registered by the URI schemes it serves. Importing this
package registers them all.
"""

from __future__ import annotations

from flight_lake.storage.base import BACKENDS, ObjectInfo, Storage, backend_for, check_key
from flight_lake.storage.local import LocalStorage
from flight_lake.storage.s3 import S3Storage

__all__ = [
    "BACKENDS",
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "backend_for",
    "check_key",
]
