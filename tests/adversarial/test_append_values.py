"""Finding 7: append parses with exactly the rules create infers with.

Appending ``007``, `` 8``, ``0x10`` or ``-0`` into an int64 column stored 7, 8, 16 and 0,
while create would have kept such a column as text. Each value here is first given to
create: where create keeps the column as text, append must refuse the value naming its
line; where create reads an integer, append must store the same integer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import make_settings

VALUES = ["007", " 8", "0x10", "-0", "+5", "1e3", "9223372036854775808", "42"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("append_values")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path)
    with Server(settings) as running:
        yield running


def ingest(server: Server, name: str, body: bytes, mode: str = "create") -> httpx.Response:
    return httpx.post(f"{server.http_uri}/v1/ingest", params={"name": name, "mode": mode},
                      content=body, headers={"Content-Type": "text/csv"}, timeout=30)


def column_type(server: Server, name: str, column: str) -> str:
    manifest = httpx.get(f"{server.http_uri}/v1/catalog/{name}", timeout=10).json()
    return next(c["type"] for c in manifest["schema"] if c["name"] == column)


def values(server: Server, sql: str) -> list:
    answer = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": sql}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [next(iter(row.values())) for row in answer.json()]


@pytest.mark.parametrize("value", VALUES)
def test_append_accepts_exactly_what_create_would_read_as_an_integer(
        server: Server, value: str) -> None:
    index = VALUES.index(value)
    probe, target = f"probe_{index}", f"target_{index}"
    created = ingest(server, probe, f'id,n\n1,"{value}"\n'.encode())
    assert created.status_code == 200, created.text
    create_reads_an_integer = column_type(server, probe, "n") == "int64"

    assert ingest(server, target, b"id,n\n1,5\n2,6\n").status_code == 200
    assert column_type(server, target, "n") == "int64"
    body = f'id,n\n3,7\n4,"{value}"\n5,9\n'.encode()
    appended = ingest(server, target, body, mode="append")
    if create_reads_an_integer:
        assert appended.status_code == 200, appended.text
        assert values(server, f"SELECT n FROM {target} WHERE id = 4") == \
            values(server, f"SELECT n FROM {probe}")
    else:
        assert appended.status_code == 400, (value, appended.text)
        error = appended.json()
        assert error["error"] == "invalid_input" and error["line"] == 3, error
        assert values(server, f"SELECT count(*) FROM {target}") == [2]


def test_the_line_is_found_past_quoted_newlines(server: Server) -> None:
    assert ingest(server, "lines", b"id,n,note\n1,5,a\n").status_code == 200
    body = b'id,n,note\n2,6,"two\nlines"\n3,7,plain\n\n4,0x10,bad\n'
    appended = ingest(server, "lines", body, mode="append")
    assert appended.status_code == 400, appended.text
    assert appended.json()["line"] == 6, appended.json()
    assert json.loads(httpx.get(f"{server.http_uri}/v1/catalog/lines").text)["row_count"] == 1
