"""Finding 9: a quoted field that is never closed is refused, naming the line it opened on.

Arrow reads an unclosed quote as one value running to the end of the upload, silently.
What RFC 4180 allows must still pass: the cases below are written after the csv-spectrum
suite (comma in quotes, escaped quotes, newlines in quotes, CRLF, empty fields, UTF-8),
and each is checked against Python's own ``csv`` module reading the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import httpx
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from tests.support import make_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("malformed_csv")
    settings = make_settings(StorageSettings(uri=str(tmp_path / "lake")), tmp_path,
                             flight={"port": 0})
    with Server(settings) as running:
        yield running


def ingest(server: Server, name: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.http_uri}/v1/ingest", params={"name": name}, content=body,
                      headers={"Content-Type": "text/csv"}, timeout=30)


def rows(server: Server, name: str) -> list[list[str]]:
    answer = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": f"SELECT * FROM {name}"},
                        headers={"Accept": "application/x-ndjson"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [["" if value is None else str(value) for value in json.loads(line).values()]
            for line in answer.text.splitlines() if line]


UNCLOSED = [
    # (body, the line where the unclosed quote opens)
    (b'id,note\n1,fine\n2,"opens here\n3,swallowed\n4,also swallowed\n', 3),
    (b'id,note\n1,"first line\nsecond"\n2,"never closed\n3,x', 4),
    (b'id,note\n1,"unclosed at the very end', 2),
    (b'id,note\r\n1,ok\r\n2,"crlf\r\n3,x\r\n', 3),
    (b'id,note\n1,"escaped "" quote, then none\n2,x\n', 2),
]


@pytest.mark.parametrize(("body", "line"), UNCLOSED)
def test_an_unclosed_quote_is_refused_naming_its_line(
        server: Server, body: bytes, line: int) -> None:
    name = f"unclosed_{UNCLOSED.index((body, line))}"
    answer = ingest(server, name, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "invalid_input" and error["line"] == line, error
    assert "quote" in error["detail"]
    catalog = httpx.get(f"{server.http_uri}/v1/catalog", timeout=10).json()
    assert name not in [manifest["name"] for manifest in catalog]


SPECTRUM = {
    "comma_in_quotes": b'first,last,address,city,zip\n'
                       b'John,Doe,120 any st.,"Anytown, WW",08123\n',
    "empty": b'a,b,c\n1,"",""\n2,3,4\n',
    "empty_crlf": b'a,b,c\r\n1,"",""\r\n2,3,4\r\n',
    "escaped_quotes": b'a,b\n1,"ha ""ha"" ha"\n3,4\n',
    "json": b'key,val\n1,"{""type"": ""Point"", ""coordinates"": [102.0, 0.5]}"\n',
    "newlines": b'a,b,c\n1,2,3\n"Once upon \na time",5,6\n7,8,9\n',
    "newlines_crlf": b'a,b,c\r\n1,2,3\r\n"Once upon \r\na time",5,6\r\n7,8,9\r\n',
    "quotes_and_newlines": b'a,b\n1,"ha \n""ha"" \nha"\n3,4\n',
    "simple": b'a,b,c\n1,2,3\n',
    "simple_crlf": b'a,b,c\r\n1,2,3\r\n',
    "utf8": 'a,b,c\n1,2,3\n4,5,\u02a4\n'.encode(),
    "ends_with_quoted_newline": b'a,b\n1,"last value ends in a newline\n"\n',
    "no_final_newline": b'a,b\n1,"closed"',
}


@pytest.mark.parametrize("case", sorted(SPECTRUM))
def test_rfc_4180_cases_pass_as_pythons_csv_reads_them(server: Server, case: str) -> None:
    body = SPECTRUM[case]
    answer = ingest(server, case, body)
    assert answer.status_code == 200, answer.text
    expected = list(csv.reader(io.StringIO(body.decode(), newline=""), strict=True))[1:]
    assert rows(server, case) == expected


def test_the_server_still_ingests_after_refusals(server: Server) -> None:
    assert ingest(server, "after", b"a\n1\n").json()["row_count"] == 1
