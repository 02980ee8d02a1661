"""The error tree and each edge's one table: every code has a status, a subclass falls back
to its ancestor's row, and ``retry_after`` comes from the error itself."""

from __future__ import annotations

import json

import httpx
import pyarrow.flight as flight
import pytest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flight_lake.errors import (
    ERRORS_BY_CODE,
    Busy,
    InvalidInput,
    LakeError,
    NotAcceptable,
    UnsupportedMediaType,
    mapped,
    summarise,
)
from flight_lake.flight.status import FLIGHT_CLASS, to_flight_error
from flight_lake.http.listener import HttpServer
from flight_lake.http.statuses import EXCEPTION_HANDLERS, HTTP_STATUS


def test_every_code_has_an_http_status_and_a_flight_status() -> None:
    for code, error_class in ERRORS_BY_CODE.items():
        error = error_class("x", retry_after=1) if error_class is Busy else error_class("x")
        assert HTTP_STATUS[code] == mapped(HTTP_STATUS, error)
        assert isinstance(to_flight_error(error), mapped(FLIGHT_CLASS, error))
        assert json.loads(to_flight_error(error).extra_info)["error"] == code


def test_a_code_without_a_row_takes_its_ancestors() -> None:
    table = {"internal": "i", "invalid_input": "bad"}
    assert mapped(table, NotAcceptable("x")) == "bad"
    assert mapped(table, UnsupportedMediaType("x")) == "bad"
    assert mapped(table, LakeError("x")) == "i"
    assert mapped(FLIGHT_CLASS, NotAcceptable("x")) is flight.FlightServerError


def test_retry_after_comes_from_the_error() -> None:
    busy = Busy("full", retry_after=17)
    assert busy.to_dict() == {"error": "busy", "detail": "full", "retry_after": 17}
    flight_error = to_flight_error(busy)
    assert isinstance(flight_error, flight.FlightUnavailableError)
    assert json.loads(flight_error.extra_info)["retry_after"] == 17

    async def refuse(request: Request) -> Response:
        raise Busy("full", retry_after=17)

    app = Starlette(routes=[Route("/", refuse)], exception_handlers=EXCEPTION_HANDLERS)
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        response = httpx.get(f"{server.url}/", timeout=30)
    finally:
        server.stop()
    assert response.status_code == 503 and response.headers["retry-after"] == "17"
    assert response.json()["retry_after"] == 17
    with pytest.raises(TypeError):
        Busy("no delay")  # type: ignore[call-arg]


def test_validation_summary_is_one_line_naming_fields() -> None:
    class Body(BaseModel):
        sql: str
        rows: int

    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"rows": "many"})
    assert summarise(caught.value) == (
        "sql: Field required; rows: Input should be a valid integer, unable to parse string "
        "as an integer")
    assert summarise(caught.value, "invalid setting ").startswith("invalid setting sql: ")
    with pytest.raises(ValidationError) as broken:
        Body.model_validate_json(b"{not json")
    assert summarise(broken.value).startswith("invalid JSON body: ")
    assert isinstance(InvalidInput(summarise(broken.value)), LakeError)
