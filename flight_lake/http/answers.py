"""The JSON answers of the HTTP adapter that are not a manifest, as pydantic models.

The routes build their bodies through these where they are made here, and
:mod:`flight_lake.http.openapi` describes every answer from them; the manifest is the
catalog's own model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Error(BaseModel):
    """Every error body: a stable code and a human detail."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(examples=["invalid_input", "not_found", "busy"])
    detail: str
    line: int | None = Field(default=None, description="the CSV line, where there is one")
    retry_after: int | None = Field(default=None, description="busy: seconds to wait")


class StorageStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    backend: str
    uri: str
    status: Literal["ok", "unreachable"]
    detail: str | None = Field(default=None, description="why it is unreachable")


class Health(BaseModel):
    """Service status at a glance (``/health`` and Flight's ``health`` action)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "draining", "storage_unreachable"]
    service: str
    version: str | None = None
    storage: StorageStatus | None = None
    datasets: int | None = None
    ingests_running: int | None = None
    reads_running: int | None = None
    cache: dict | None = Field(default=None, description=(
        "the one cache budget ([cache] max_bytes): decoded Arrow objects and DuckDB copies "
        "per dataset"))


class StoredObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    size: int


class StorageListing(BaseModel):
    """The objects under a prefix, sorted by key."""

    model_config = ConfigDict(extra="forbid")

    prefix: str
    objects: list[StoredObject]


class TransactionOpened(BaseModel):
    """A transaction for many files, one version (``POST /v1/transactions``)."""

    model_config = ConfigDict(extra="forbid")

    transaction: str
    name: str
    mode: Literal["create", "replace", "append"]
    partition_by: list[str]
    sort_by: list[str]
    idle_expiry_seconds: float = Field(description=(
        "dropped, with what it staged, after this long with no file uploading and no call"))


class FileStaged(BaseModel):
    """One file staged in a transaction (``POST /v1/ingest?transaction=…``): not committed."""

    model_config = ConfigDict(extra="forbid")

    file: str
    index: int = Field(description="its place in the committed version (the order staged)")
    rows: int
    objects: int
    bytes: int


class TransactionAborted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aborted: str
