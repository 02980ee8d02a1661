"""The wire protocol's facts have one definition (clients/flight_lake_client/protocol.py) that the
server, the client, the CLI and the OpenAPI document all use."""

from __future__ import annotations

from importlib import metadata
from typing import get_args

import flight_lake
import flight_lake_client
from flight_lake import bodies, catalog
from flight_lake.flight import messages, server
from flight_lake.http.routes import OPENAPI
from flight_lake_client import client, protocol


def test_one_chunk_schema() -> None:
    assert server.CHUNK_SCHEMA is protocol.CHUNK_SCHEMA is client.CHUNK_SCHEMA
    assert protocol.CHUNK_SCHEMA.names == ["chunk"]


def test_one_version() -> None:
    assert flight_lake.__version__ == flight_lake_client.__version__ == protocol.VERSION
    assert metadata.version("flight-lake") == protocol.VERSION
    assert OPENAPI["info"]["version"] == protocol.VERSION


def test_one_name_rule_and_one_set_of_modes() -> None:
    assert catalog.NAME_PATTERN.pattern == protocol.DATASET_NAME
    assert catalog.MODES == protocol.MODES == ("create", "replace", "append")
    for model in (bodies.RegisterRequest, messages.IngestCommand):
        assert set(get_args(model.model_fields["mode"].annotation)) == set(protocol.MODES)
    ingest = OPENAPI["paths"]["/v1/ingest"]["post"]["parameters"]
    by_name = {parameter["name"]: parameter["schema"] for parameter in ingest}
    assert by_name["name"]["pattern"] == protocol.DATASET_NAME
    assert tuple(by_name["mode"]["enum"]) == protocol.MODES
    register = OPENAPI["components"]["schemas"]["RegisterRequest"]
    assert tuple(register["properties"]["mode"]["enum"]) == protocol.MODES
