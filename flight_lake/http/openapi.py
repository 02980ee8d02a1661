"""The OpenAPI 3.1 description of the HTTP adapter, generated from the route table.

Each :class:`Endpoint` of ``routes.ENDPOINTS`` names its handler, its JSON request model,
its answer's type, its parameters' types and the error codes it can answer;
:func:`describe` turns that table into the document served at ``/openapi.json``. Schemas
come from the pydantic models (``model_json_schema``) and the protocol's single sources
(the dataset-name rule, the modes), statuses from ``statuses.HTTP_STATUS``; nothing is
written twice. ``tests/test_http.py`` checks the document names exactly the app's routes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from flight_lake import __version__
from flight_lake.http.answers import Error
from flight_lake.http.statuses import HTTP_STATUS
from flight_lake_client.protocol import DATASET_NAME

JSON = "application/json"
REF = "#/components/schemas/{model}"
DatasetName = Annotated[str, Field(pattern=DATASET_NAME)]

ERROR_REASONS: dict[str, str] = {
    "invalid_input": "invalid input (for CSV, `line` names the line)",
    "not_acceptable": "the Accept header names no supported format",
    "unsupported_media_type": "unsupported Content-Type or Content-Encoding",
    "permission_denied": "permission denied (SQL that reads files, writes or changes settings)",
    "not_found": "unknown dataset or object",
    "conflict": "conflict: the dataset exists with another schema (or, on append, layout)",
    "too_large": "too large (ingest.max_upload_bytes)",
    "too_many_partitions": "more partition_by values than ingest.max_partitions",
    "storage_error": "the object store failed",
    "busy": "busy (every ingest slot taken; retry after `Retry-After` seconds)",
    "unavailable": "shutting down",
    "timeout": "the query ran past query.timeout_seconds",
}


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One route: what Starlette serves and what the document says about it."""

    method: str
    path: str  # Starlette's, with converters: "/v1/storage/get/{key:path}"
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    answer: Any = None  # the type of the 200 JSON body
    body: type[BaseModel] | None = None  # the JSON request body
    errors: tuple[str, ...] = ()  # codes of flight_lake.errors it may answer
    query: tuple[Parameter, ...] = ()
    path_params: tuple[Parameter, ...] = ()
    operation: str | None = None  # its row in the role table (auth/roles.py)
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # what models cannot say

    @property
    def document_path(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


def describe(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI document of ``endpoints``; every model they name becomes a component."""
    bodies = {endpoint.body for endpoint in endpoints if endpoint.body is not None}
    answers = {Error} | {model for endpoint in endpoints for model in _models(endpoint.answer)}
    _, definitions = models_json_schema(
        [(model, "validation") for model in sorted(bodies, key=_name)]
        + [(model, "serialization") for model in sorted(answers, key=_name)],
        ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {"summary": endpoint.summary}
        if endpoint.description:
            operation["description"] = endpoint.description
        parameters = [_parameter(p, "path") for p in endpoint.path_params]
        parameters += [_parameter(p, "query") for p in endpoint.query]
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                JSON: {"schema": _schema(endpoint.body)}}}
        responses: dict[str, Any] = {}
        if endpoint.answer is not None:
            responses["200"] = {"description": "the answer",
                                "content": {JSON: {"schema": _schema(endpoint.answer)}}}
        responses.update(_errors(endpoint.errors))
        operation["responses"] = responses
        _merge(operation, endpoint.extra)
        paths.setdefault(endpoint.document_path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flight_lake HTTP adapter",
            "version": __version__,
            "description": "CSV in, Parquet in object storage, SQL out. See docs/HTTP.md.",
        },
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }


def _schema(annotation: Any) -> dict[str, Any]:
    """A reference for a model, else the type's own schema (lists of models by reference)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"$ref": REF.format(model=annotation.__name__)}
    schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode="serialization")
    schema.pop("$defs", None)  # they are components
    return schema


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models ``annotation`` names: itself, or the items of a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [arg for arg in get_args(annotation)
            if isinstance(arg, type) and issubclass(arg, BaseModel)]


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _parameter(parameter: Parameter, where: str) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": parameter.name, "in": where, "required": parameter.required or where == "path",
        "schema": _schema(parameter.annotation)}
    if parameter.description:
        described["description"] = parameter.description
    return described


def _errors(codes: tuple[str, ...]) -> dict[str, Any]:
    """The error answers, grouped by status: ``{"404": {…}}`` with every reason for it."""
    reasons: dict[int, list[str]] = {}
    for code in codes:
        reasons.setdefault(HTTP_STATUS[code], []).append(ERROR_REASONS[code])
    return {
        str(status): {"description": "; or ".join(reasons[status]),
                      "content": {JSON: {"schema": {"$ref": REF.format(model="Error")}}}}
        for status in sorted(reasons)
    }


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
