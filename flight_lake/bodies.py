"""Request bodies both front ends take: the same typed models on Flight and on HTTP."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from flight_lake.catalog import Mode
from flight_lake.layout import Layout, layout_of


class StrictBody(BaseModel):
    """Strict JSON: unknown fields are refused, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlRequest(StrictBody):
    sql: str = Field(min_length=1)


class RegisterRequest(StrictBody):
    """Commit Parquet objects already in storage under ``datasets/<name>/``."""

    name: str
    keys: list[str] = Field(min_length=1)
    mode: Mode = "create"


class BeginRequest(StrictBody):
    """Open a transaction: files staged into it become one version of ``name``, each
    written in the layout (left out on append: the dataset's; else flat)."""

    name: str
    mode: Mode = "create"
    partition_by: list[str] | None = None
    sort_by: list[str] | None = None

    def layout(self) -> Layout | None:
        return layout_of(self.partition_by, self.sort_by)


class CommitRequest(StrictBody):
    """Commit a transaction; ``files``, if given, is how many files the client staged."""

    transaction: str = Field(min_length=1, max_length=64)
    files: int | None = Field(default=None, ge=1)


class TransactionRequest(StrictBody):
    transaction: str = Field(min_length=1, max_length=64)
