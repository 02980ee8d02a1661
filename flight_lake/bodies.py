"""Request bodies both front ends take: the same typed models on Flight and on HTTP."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from flight_lake.catalog import Mode


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
