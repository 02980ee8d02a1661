"""Flight commands and tickets: JSON objects, parsed into typed pydantic models.

Every descriptor command and ticket is UTF-8 JSON (docs/FLIGHT.md). Parsing is the only place
that looks at raw bytes; the server only sees these models.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from flight_lake.bodies import SqlRequest, StrictBody
from flight_lake.catalog import Mode
from flight_lake.errors import InvalidInput, TooLarge, summarise
from flight_lake.layout import Layout, layout_of


class IngestCommand(StrictBody):
    op: Literal["ingest"]
    name: str
    # "csv" (or its synonym "file"): a file's bytes in `chunk: binary` batches, CSV
    # (plain, gzip, zstd), Parquet or Arrow IPC; "arrow": record batches.
    format: Literal["csv", "file", "arrow"] = "csv"
    mode: Mode = "create"
    # Layout (docs/FLIGHT.md): left out on append, the dataset's own; else flat.
    partition_by: list[str] | None = None
    sort_by: list[str] | None = None
    # The client ends its stream with protocol.END_MARKER as app_metadata; a stream that
    # ends without it was cut off (a killed client), not finished, and commits nothing.
    end_marker: bool = False
    # Stage the file into this transaction (ingest.begin) instead of committing it; `file`
    # names it in errors (the file's name).
    transaction: str | None = Field(default=None, min_length=1, max_length=64)
    file: str | None = None

    def layout(self) -> Layout | None:
        return layout_of(self.partition_by, self.sort_by)


class DatasetObjectTicket(StrictBody):
    """Fetch one data object of a dataset, as listed by GetFlightInfo on its path."""

    dataset: str
    key: str


class NameBody(StrictBody):
    name: str


class EmptyBody(StrictBody):
    pass


Ticket = Annotated[SqlRequest | DatasetObjectTicket, Field(union_mode="left_to_right")]
_TICKET: TypeAdapter[SqlRequest | DatasetObjectTicket] = TypeAdapter(Ticket)


def check_size(raw: bytes, limit: int, what: str) -> bytes:
    """``raw`` if at most ``limit`` bytes (``flight.max_command_bytes``), else ``TooLarge``."""
    if len(raw) > limit:
        raise TooLarge(f"the {what} is {len(raw)} bytes, over flight.max_command_bytes ({limit})")
    return raw


def parse(model: type[StrictBody], raw: bytes, what: str) -> StrictBody:
    """Parse ``raw`` JSON bytes into ``model``; anything malformed is ``InvalidInput``."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {summarise(exc)}") from exc


def parse_ticket(raw: bytes) -> SqlRequest | DatasetObjectTicket:
    try:
        return _TICKET.validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(
            'invalid ticket: expected {"sql": …} or {"dataset": …, "key": …}'
        ) from exc


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def dumps(value: object) -> bytes:
    """Compact JSON bytes for action results and PutResult metadata."""
    return json.dumps(value, separators=(",", ":"), default=str).encode()
