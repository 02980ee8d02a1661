"""A dataset's manifest as the client sees it: typed attributes over the server's JSON."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its name, Arrow type (as text) and nullability."""

    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class DataObject:
    """One Parquet object of a dataset version (one Flight endpoint when reading it)."""

    key: str
    size: int
    row_count: int


@dataclass(frozen=True)
class ReplacedVersion:
    """The version a ``create`` or ``replace`` swapped out, as it was."""

    version: int
    row_count: int
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """One committed version of a dataset, as returned by ingest, ``manifest`` and ``datasets``."""

    dataset_id: str
    name: str
    version: int
    schema_fingerprint: str
    columns: tuple[Column, ...]
    objects: tuple[DataObject, ...]
    row_count: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime
    content_digest: str | None = None
    """``sha256:…`` of the upload that made this version's whole content (null after append)."""
    replaced: ReplacedVersion | None = None
    """The version this one replaced (a ``create`` or ``replace`` over existing data)."""
    unchanged: bool = False
    """True when an ingest brought the content the dataset already held: nothing changed."""
    partition_by: tuple[str, ...] = ()
    """The layout's partition columns (Hive-style ``column=value`` folders); empty: none."""
    sort_by: tuple[str, ...] = ()
    """The layout's sort columns (each upload written in that order); empty: none."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Manifest:
        """Build from the server's JSON (the ``schema`` key holds the columns)."""
        return cls(
            dataset_id=str(body["dataset_id"]),
            name=str(body["name"]),
            version=int(body["version"]),
            schema_fingerprint=str(body["schema_fingerprint"]),
            columns=tuple(
                Column(str(c["name"]), str(c["type"]), bool(c.get("nullable", True)))
                for c in body.get("schema", [])
            ),
            objects=tuple(
                DataObject(str(o["key"]), int(o["size"]), int(o["row_count"]))
                for o in body.get("objects", [])
            ),
            row_count=int(body["row_count"]),
            size_bytes=int(body["size_bytes"]),
            created_at=_timestamp(body["created_at"]),
            updated_at=_timestamp(body["updated_at"]),
            content_digest=body.get("content_digest"),
            replaced=(ReplacedVersion(int(replaced["version"]), int(replaced["row_count"]),
                                      int(replaced["size_bytes"]))
                      if (replaced := body.get("replaced")) else None),
            unchanged=bool(body.get("unchanged", False)),
            partition_by=tuple(str(c) for c in (body.get("layout") or {}).get("partition_by", [])),
            sort_by=tuple(str(c) for c in (body.get("layout") or {}).get("sort_by", [])),
            raw=copy.deepcopy(body),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest exactly as the server sent it (JSON-ready)."""
        return copy.deepcopy(self.raw)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
