"""The OpenAPI 3.1 description of the HTTP adapter, served at ``/openapi.json``.

Kept by hand, next to the routes; ``tests/test_http.py`` checks that every route of the
app is described here with its methods, and nothing else is.
"""

from __future__ import annotations

from typing import Any

from flight_lake import __version__

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "invalid input (for CSV, `line` names the line)",
        403: "permission denied (SQL that reads files, writes or changes settings)",
        404: "unknown dataset or object",
        405: "method not allowed",
        406: "the Accept header names no supported format",
        409: "conflict: the dataset exists with another schema",
        413: "too large (ingest.max_upload_bytes)",
        415: "unsupported Content-Type or Content-Encoding",
        502: "the object store failed",
        503: "busy (every ingest slot taken; retry after `Retry-After` seconds) or shutting down",
        504: "the query ran past query.timeout_seconds",
    }
    return {str(status): _json(_ref("Error"), reasons[status]) for status in statuses}


_NAME = {"name": "name", "required": True, "schema": {"type": "string",
                                                      "pattern": "^[a-z_][a-z0-9_]{0,62}$"}}
_MODE = {"name": "mode", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["create", "replace", "append"],
                    "default": "create"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "flight_lake HTTP adapter",
        "version": __version__,
        "description": "CSV in, Parquet in object storage, SQL out. See docs/HTTP.md.",
    },
    "paths": {
        "/health": {"get": {
            "summary": "Service status at a glance",
            "responses": {"200": _json(_ref("Health"), "serving"),
                          "503": _json(_ref("Health"), "shutting down")},
        }},
        "/openapi.json": {"get": {
            "summary": "This description",
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
        }},
        "/v1/ingest": {"post": {
            "summary": "Upload a CSV file as a new version of a dataset",
            "description": "Multipart with a `file` part (`curl -F file=@x.csv`) or the raw CSV "
                           "(`--data-binary @x.csv -H 'Content-Type: text/csv'`). Streamed.",
            "parameters": [{**_NAME, "in": "query"}, _MODE],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}}}},
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }},
            "responses": {"200": _json(_ref("Manifest"), "the committed manifest"),
                          **_errors(400, 404, 409, 413, 415, 502, 503)},
        }},
        "/v1/sql": {"post": {
            "summary": "Run one read-only SQL statement over the datasets",
            "requestBody": {"required": True, "content": {_JSON: {"schema": {
                "type": "object", "required": ["sql"], "additionalProperties": False,
                "properties": {"sql": {"type": "string"}}}}}},
            "responses": {
                "200": {"description": "the result, in the format the Accept header picks",
                        "content": {
                            _JSON: {"schema": {"type": "array", "items": {"type": "object"}},
                                    "example": [{"count_star()": 500000}]},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                            "application/vnd.apache.arrow.stream": {
                                "schema": {"type": "string", "format": "binary"}},
                            "application/vnd.apache.parquet": {
                                "schema": {"type": "string", "format": "binary"}},
                        }},
                **_errors(400, 403, 404, 406, 413, 503, 504),
            },
        }},
        "/v1/catalog": {"get": {
            "summary": "Every dataset with its current manifest",
            "responses": {"200": _json({"type": "array", "items": _ref("Manifest")},
                                       "the catalog, by name")},
        }},
        "/v1/catalog/register": {"post": {
            "summary": "Commit Parquet objects already under datasets/<name>/ as a version",
            "requestBody": {"required": True, "content": {_JSON: {"schema": {
                "type": "object", "required": ["name", "keys"], "additionalProperties": False,
                "properties": {"name": {"type": "string"},
                               "keys": {"type": "array", "items": {"type": "string"}},
                               "mode": {"type": "string",
                                        "enum": ["create", "replace", "append"]}}}}}},
            "responses": {"200": _json(_ref("Manifest"), "the committed manifest"),
                          **_errors(400, 404, 409, 413, 502)},
        }},
        "/v1/catalog/{name}": {"get": {
            "summary": "One dataset's current manifest",
            "parameters": [{**_NAME, "in": "path"}],
            "responses": {"200": _json(_ref("Manifest"), "the manifest"), **_errors(400, 404)},
        }},
        "/v1/storage/list": {"get": {
            "summary": "Objects under a prefix (read-only, for operators)",
            "parameters": [{"name": "prefix", "in": "query", "required": False,
                            "schema": {"type": "string", "default": ""}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "prefix": {"type": "string"},
                "objects": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "size": {"type": "integer"}}}}}},
                "the objects, sorted by key"), **_errors(400, 502)},
        }},
        "/v1/storage/get/{key}": {"get": {
            "summary": "One object's bytes, streamed (read-only, for operators)",
            "parameters": [{"name": "key", "in": "path", "required": True,
                            "description": "a key under the storage root; may contain /",
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the object",
                                  "content": {"application/octet-stream": {
                                      "schema": {"type": "string", "format": "binary"}}}},
                          **_errors(400, 404, 502)},
        }},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error", "detail"], "properties": {
            "error": {"type": "string", "examples": ["invalid_input", "not_found", "busy"]},
            "detail": {"type": "string"},
            "line": {"type": "integer", "description": "the CSV line, where there is one"}}},
        "Health": {"type": "object", "required": ["status", "service"], "properties": {
            "status": {"type": "string", "enum": ["ok", "draining"]},
            "service": {"type": "string"}, "version": {"type": "string"},
            "storage": {"type": "object"}, "datasets": {"type": "integer"},
            "ingests_running": {"type": "integer"},
            "reads_running": {"type": "integer"},
            "cache": {"type": "object", "description": "the one cache budget ([cache] "
                      "max_bytes): decoded Arrow objects and DuckDB copies per dataset"}}},
        "Manifest": {"type": "object", "properties": {
            "dataset_id": {"type": "string"}, "name": {"type": "string"},
            "version": {"type": "integer"}, "schema_fingerprint": {"type": "string"},
            "schema": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "type": {"type": "string"},
                "nullable": {"type": "boolean"}}}},
            "objects": {"type": "array", "items": {"type": "object", "properties": {
                "key": {"type": "string"}, "size": {"type": "integer"},
                "row_count": {"type": "integer"}}}},
            "row_count": {"type": "integer"}, "size_bytes": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}}},
    }},
}
