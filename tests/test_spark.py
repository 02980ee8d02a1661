"""The Spark engine (query.engine = "spark") against a local Spark Connect server.

One query suite runs on both engines over the same lake and must give identical answers
(on a folder; a part of it on moto's S3); Spark reads every dataset's Iceberg table (the
``_iceberg`` warehouse, namespace ``lake``) at its current and an older version, on both;
the read-only rule holds before anything reaches Spark; deadlines and cancellation stop the
Spark operation; the answer leaves through Flight, Flight SQL and HTTP unchanged. The folder
lake is built once per run (``spark_lake``), like the server, whichever worker asks first;
Spark reads the Iceberg tables the lake wrote on each commit (no test-side writer).
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flight_sql
import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_lake.errors import (
    Cancelled,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QueryTimeout,
)
from flight_lake.lake import Lake
from flight_lake.sample_data import iter_csv
from flight_lake.settings import Settings, StorageSettings
from flight_lake.spark_engine import SPARK_CATALOG, open_session, session_conf
from tests.support import SPARK_DIR, make_settings, sql, wait_until

pytestmark = pytest.mark.slow

FIRST_ROWS = 1200
APPENDED_ROWS = 300

# One suite, written in the SQL both engines read alike (aliases name every column).
SUITE = {
    "count": "SELECT count(*) AS n FROM workers",
    "filtered group by": (
        "SELECT role, count(*) AS workers, avg(hourly_rate) AS avg_rate FROM workers "
        "WHERE state = 'IL' GROUP BY role ORDER BY role"),
    "point lookup": "SELECT * FROM workers WHERE id = 907",
    "top 10": "SELECT * FROM workers ORDER BY hourly_rate DESC, id LIMIT 10",
    "join and cte": (
        "WITH big AS (SELECT state, count(*) AS n FROM workers GROUP BY state HAVING "
        "count(*) > 10) SELECT r.region, sum(b.n) AS n FROM big b JOIN regions r "
        "ON b.state = r.state GROUP BY r.region ORDER BY r.region"),
    "window": (
        "SELECT id, state, row_number() OVER (PARTITION BY state ORDER BY id) AS rank_in_state "
        "FROM workers WHERE id < 60 ORDER BY id, rank_in_state"),
    "expressions": (
        "SELECT upper(role) AS role, min(hire_date) AS first_hire, "
        "max(years_experience) AS most_years, count(DISTINCT state) AS states, "
        "count(score) AS scored, "
        "sum(CASE WHEN active THEN 1 ELSE 0 END) AS active, "
        "min(length(last_name)) AS shortest FROM workers GROUP BY role ORDER BY role"),
    "empty": "SELECT id FROM workers WHERE id < 0",
}


@pytest.fixture(scope="session")
def spark_lake() -> StorageSettings:
    """One lake on a folder for the whole run, built by the first worker that asks (under
    a file lock, beside the Spark server's state): ``workers`` in two versions (create,
    then append) and ``regions``, with their Iceberg tables."""
    folder = Path(os.environ[SPARK_DIR])
    storage = StorageSettings(uri=str(folder / "lake"))
    with (folder / "lake.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "lake.ready").exists():
            build_lake(make_settings(storage, folder), FIRST_ROWS, APPENDED_ROWS)
            (folder / "lake.ready").touch()
    return storage


def build_lake(settings: Settings, rows: int, appended_rows: int) -> None:
    """``workers`` (create, then append) and ``regions``: the lake mirrors each commit into
    its Iceberg table itself, which is all Spark reads."""
    regions = pa.table({"state": ["IL", "NY", "CA", "TX", "WA"],
                        "region": ["midwest", "east", "west", "south", "west"]})
    with Lake(settings) as lake:
        lake.ingest.ingest_csv("workers", "create", iter_csv(rows))
        lake.ingest.ingest_arrow("regions", "create", regions.schema, regions.to_batches())
        appended = lake.read(f"SELECT * FROM workers WHERE id <= {appended_rows}").read_all()
        lake.ingest.ingest_arrow("workers", "append", appended.schema, appended.to_batches())
        assert lake.iceberg.current_version("workers") == 2


@pytest.fixture(scope="module")
def engines(spark_lake: StorageSettings, spark_remote: str, tmp_path_factory:
            pytest.TempPathFactory) -> Iterator[tuple[Lake, Lake]]:
    """Two lakes over the same folder: DuckDB's and Spark's."""
    yield from both_engines(spark_lake, tmp_path_factory.mktemp("engines"), spark_remote)


def both_engines(storage: StorageSettings, folder: Path, remote: str
                 ) -> Iterator[tuple[Lake, Lake]]:
    duck = Lake(make_settings(storage, folder)).start()
    spark = Lake(make_settings(storage, folder, query={  # a busy machine slows Spark most
        "engine": "spark", "spark_remote": remote, "timeout_seconds": 180})).start()
    yield duck, spark
    spark.close()
    duck.close()


def normalized(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows as tuples of comparable values: numbers as floats, floats compared rounded."""
    def value(item: Any) -> Any:
        if isinstance(item, bool) or item is None or isinstance(item, str | date):
            return item
        if isinstance(item, int | Decimal | float):
            number = float(item)
            return round(number, 9 - math.floor(math.log10(abs(number)))) if number \
                else 0.0
        return item
    return [tuple(value(item) for item in row.values()) for row in table.to_pylist()]


def test_both_engines_answer_alike(engines: tuple[Lake, Lake]) -> None:
    duck, spark = engines
    differ = []
    for name, query in SUITE.items():
        expected = duck.read(query).read_all()
        answer = spark.read(query).read_all()
        if answer.column_names != expected.column_names or \
                normalized(answer) != normalized(expected):
            differ.append((name, expected.to_pylist()[:3], answer.to_pylist()[:3]))
    assert differ == []
    query = SUITE["filtered group by"]  # GetFlightInfo's schema is the one the data comes in
    with spark.read(query) as result:
        assert spark.describe(query).equals(result.schema)
    count = spark.read(SUITE["count"]).read_all()
    assert count.column("n").to_pylist() == [FIRST_ROWS + APPENDED_ROWS]


def test_spark_reads_current_and_older_version(engines: tuple[Lake, Lake],
                                               spark_remote: str) -> None:
    assert_versions(engines[0], spark_remote, FIRST_ROWS, FIRST_ROWS + APPENDED_ROWS)


def test_spark_engine_on_s3(s3_storage_settings: StorageSettings, tmp_path: Path,
                            spark_remote: str) -> None:
    """On moto's S3 (s3a:// from Spark): both versions, and both engines alike."""
    build_lake(make_settings(s3_storage_settings, tmp_path), 200, 50)
    for duck, spark in both_engines(s3_storage_settings, tmp_path, spark_remote):
        assert_versions(duck, spark_remote, 200, 250)
        query = SUITE["join and cte"]  # both datasets, through s3a://
        assert normalized(spark.read(query).read_all()) == \
            normalized(duck.read(query).read_all())


def assert_versions(duck: Lake, remote: str, older_rows: int, current_rows: int) -> None:
    """Spark itself (no flight_lake in between) reads the Iceberg table at each version."""
    reader = open_session(remote, session_conf(duck.storage))
    try:
        snapshots = reader.sql(f"SELECT snapshot_id FROM {SPARK_CATALOG}.lake.workers.snapshots"
                               " ORDER BY committed_at").collect()
        assert len(snapshots) == duck.catalog.get("workers").version == 2
        older = snapshots[0]["snapshot_id"]
        counts = reader.sql(
            f"SELECT (SELECT count(*) FROM workers) AS current, "
            f"(SELECT count(*) FROM workers VERSION AS OF {older}) AS older").collect()[0]
        assert (counts["current"], counts["older"]) == (current_rows, older_rows)
    finally:
        reader.stop()


REFUSED = {
    "DROP TABLE workers": PermissionDenied,
    "INSERT INTO workers SELECT * FROM workers": PermissionDenied,
    "SELECT 1; DROP TABLE workers": InvalidInput,
    "SELECT reflect('java.lang.System', 'exit', '0') AS x": PermissionDenied,
    "SELECT java_method('java.lang.System', 'getenv', 'HOME') AS x": PermissionDenied,
    "SELECT 'a\\' AS x FROM workers": InvalidInput,
    "SELECT $$x$$ AS x": InvalidInput,
    "SELECT * FROM parquet.`/etc`": InvalidInput,
    "SELECT * FROM flight_lake.lake.workers": PermissionDenied,
    "SELECT * FROM nowhere": NotFound,
    "CREATE TABLE x AS SELECT 1": PermissionDenied,
}


def test_read_only_before_spark(engines: tuple[Lake, Lake]) -> None:
    _, spark = engines
    before = spark.read("SELECT count(*) AS n FROM workers").read_all()
    for statement, refusal in REFUSED.items():
        with pytest.raises(refusal):
            spark.read(statement).read_all()
    assert spark.read("SELECT count(*) AS n FROM workers").read_all().equals(before)


def test_spark_errors_are_the_lakes(engines: tuple[Lake, Lake]) -> None:
    _, spark = engines
    with pytest.raises(InvalidInput, match="Spark"):
        spark.read("SELECT no_such_column FROM workers").read_all()


def test_deadline_and_cancel_stop_spark(engines: tuple[Lake, Lake]) -> None:
    _, spark = engines
    endless = "SELECT count(*) AS n FROM workers a, workers b, workers c, workers d"
    with pytest.raises(QueryTimeout):
        spark.read(endless, timeout=1.0).read_all()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            spark.read(endless, read_id="long").read_all()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: spark.cancel("long"), seconds=20, what="the read running")
    thread.join(timeout=30)
    assert len(failure) == 1 and isinstance(failure[0], Cancelled)
    assert spark.read("SELECT count(*) AS n FROM regions").read_all().column("n")[0].as_py() == 5


def test_front_ends_carry_spark_answers(spark_lake: StorageSettings, spark_remote: str,
                                        serve: Any, engines: tuple[Lake, Lake]) -> None:
    storage = spark_lake
    query = ("SELECT role, count(*) AS workers, max(hourly_rate) AS top_rate FROM workers "
             "WHERE state = 'IL' GROUP BY role ORDER BY role")  # no float sums: exact
    expected = engines[1].read(query).read_all()
    server = serve(storage=storage, query={"engine": "spark", "spark_remote": spark_remote})
    client = flight.connect(server.flight_uri)
    try:
        assert sql(client, query).equals(expected)
    finally:
        client.close()
    with flight_sql.connect(server.flight_uri, autocommit=True) as conn, \
            conn.cursor() as cursor:
        cursor.execute(query)
        assert cursor.fetch_arrow_table().equals(expected)
    answer = httpx.post(f"{server.http_uri}/v1/sql", json={"sql": query}, timeout=60)
    assert answer.status_code == 200
    assert answer.json() == expected.to_pylist()
