"""The facts of the wire protocol, defined once: the server imports them from here.

The client must never import the server, so what both sides must agree on lives in the
client package, and ``flight_lake`` takes it from this module: the rule for dataset names,
the write modes, the schema of a CSV upload over DoPut, and the package version.
"""

from __future__ import annotations

from importlib import metadata
from typing import Literal, get_args

import pyarrow as pa

DATASET_NAME = r"^[a-z_][a-z0-9_]{0,62}$"
"""A dataset name is a SQL identifier: lower-case letters, digits and ``_``, at most 63."""

Mode = Literal["create", "replace", "append"]
"""``create`` a dataset, ``replace`` its contents, or ``append`` rows to it."""
MODES: tuple[Mode, ...] = get_args(Mode)

CHUNK_SCHEMA = pa.schema([("chunk", pa.binary())])
"""DoPut with ``format: csv`` streams the file as batches of this one binary column."""

END_MARKER = b"flight-lake:end"
"""The ``app_metadata`` of the last message of an upload whose command says ``end_marker``:
a stream that ends without it was cut off (a killed client), not finished."""


def _installed_version() -> str:
    try:
        return metadata.version("flight-lake")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = _installed_version()
"""The version of the ``flight-lake`` distribution (pyproject.toml), which ships both packages."""
