"""The Arrow Flight SQL JDBC driver (DBeaver's) against a live server, from a Java program.

``tests/jdbc/FlightSqlJdbc.java`` is compiled (once, by the ``jdbc_classpath`` fixture) and
run with the machine's JDK. The driver jar is fetched before the tests by
``.ci/fetch-jdbc-driver`` (into ``.cache/jdbc/``); a copy in the local Maven repository is
used too. This test never downloads.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest

from flight_lake.serve import Server
from tests.support import JAVA_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "USER_GUIDE.md"


def jdbc_url(server: Server) -> str:
    """The URL docs/USER_GUIDE.md gives for DBeaver, pointed at the live server."""
    documented = re.search(r"jdbc:arrow-flight-sql://127\.0\.0\.1:8815/\S*", GUIDE.read_text())
    assert documented is not None, "docs/USER_GUIDE.md lost its JDBC URL"
    return documented.group(0).replace("127.0.0.1:8815",
                                       server.flight_uri.removeprefix("grpc://"))


@pytest.mark.slow
def test_jdbc_driver_queries_prepares_and_reads_metadata(server: Server,
                                                         jdbc_classpath: str) -> None:
    with flight_sql.connect(server.flight_uri, autocommit=True) as connection:
        connection.cursor().adbc_ingest(
            "people", pa.table({"id": [1, 2, 3], "name": ["ada", "bob", "cy"]}), mode="create")
    run = subprocess.run(
        ["java", *JAVA_OPTIONS, "-cp", jdbc_classpath, "FlightSqlJdbc",
         jdbc_url(server), "people"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert ["query", "3", "cy"] in lines
    assert [line for line in lines if line[0] == "prepared"] == [["prepared", "bob"]]
    assert ["product", "flight_lake"] in lines
    assert ["table", "memory", "main", "people", "TABLE"] in lines
    assert [line for line in lines if line[0] == "column"] == [
        ["column", "id", "BIGINT", "1"], ["column", "name", "VARCHAR", "2"]]
    errors = [line for line in lines if line[0] == "error"]
    assert len(errors) == 1 and "syntax error" in errors[0][1]
