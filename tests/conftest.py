"""The one place fixtures live: storage backends and servers on 127.0.0.1 port 0.

Storage backends. ``storage_settings`` (and ``storage`` and ``settings``, built on it) is a
real folder under ``tmp_path``, and, only in the modules of the layers that touch storage
(``BACKEND_MODULES``: storage, catalog, object cache, ingest, query, scan), also a bucket on
moto's real S3 server: those tests run once per backend. Front-end tests (Flight, HTTP,
client, CLI, serve, guides) run on the local folder; each front end keeps one end-to-end
smoke test on both backends through ``backend_storage_settings`` (or on S3 alone through
``s3_storage_settings``). Refusal cases may share one lake per backend and module through
``shared_settings``. The moto server starts once per session on a free loopback port;
each test that uses it gets a new bucket.

Servers. ``serve(**sections)`` starts a :class:`~flight_lake.serve.Server` (Flight and
HTTP) on free ports with those settings sections changed, and stops it after the test;
``server`` is one started with the defaults. ``serve_process`` starts ``flight-lake serve``
as a real process. Helpers that are not fixtures are in ``tests/support.py``.

Spark. ``spark_remote`` is the ``sc://`` URL of one local Spark Connect server for the whole
run (``benchmarks/spark_server.py``): the first worker to ask starts it under a file lock in
a folder every worker shares, the others reuse it, and the controlling process stops it
when the run ends.

JDBC. ``jdbc_classpath`` compiles ``tests/jdbc/FlightSqlJdbc.java`` once per worker.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest
from moto.server import ThreadedMotoServer

from benchmarks import spark_server
from flight_lake.serve import Server
from flight_lake.settings import Settings, StorageSettings
from flight_lake.storage import Storage
from tests.support import (
    BACKENDS,
    SPARK_DIR,
    ServeProcess,
    backend_storage,
    compile_jdbc_program,
    make_settings,
    s3_storage,
)

# Test modules (by name prefix) whose storage-taking tests run on every backend.
BACKEND_MODULES = ("test_storage", "test_catalog", "test_object_cache", "test_ingest",
                   "test_query", "test_scan")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if "storage_settings" in metafunc.fixturenames and module.startswith(BACKEND_MODULES):
        metafunc.parametrize("storage_settings", BACKENDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that talks to moto's S3 server ``s3`` (``-m "not s3"`` skips them)."""
    for item in items:
        params = getattr(item, "callspec", None)
        on_s3 = params is not None and "s3" in params.params.values()
        if on_s3 or "s3_endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)


# -- Spark -----------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        os.environ[SPARK_DIR] = tempfile.mkdtemp(prefix="flight-lake-spark-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    folder = Path(os.environ.pop(SPARK_DIR, ""))
    state = folder / "server.json"
    if state.is_file():
        spark_server.stop_process(json.loads(state.read_text())["pid"])
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_remote() -> str:
    """The one local Spark Connect server of this run (started on first use)."""
    folder = Path(os.environ[SPARK_DIR])
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = folder / "server.json"
        if state.is_file():
            return str(json.loads(state.read_text())["url"])
        server = spark_server.start(folder / "server", java_options=spark_server.QUICK_JVM)
        state.write_text(json.dumps({"url": server.url, "pid": server.process.pid,
                                     "seconds": round(server.start_seconds, 1)}))
        return server.url


@pytest.fixture(scope="session")
def jdbc_classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``tests/jdbc/FlightSqlJdbc.java`` compiled once per worker, with the JDBC driver: the
    class path to run ``FlightSqlJdbc`` with (``tests.support.JAVA_OPTIONS``)."""
    return compile_jdbc_program(tmp_path_factory.mktemp("jdbc"))


# -- storage ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storage_settings(s3_endpoint: str) -> StorageSettings:
    """A fresh bucket on moto's S3 server (for the one S3 smoke test of each front end)."""
    return s3_storage(s3_endpoint)


@pytest.fixture(params=BACKENDS)
def backend_storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    """Each backend in turn: for the one end-to-end smoke test of each front end."""
    return backend_storage(request.param, tmp_path, lambda: request.getfixturevalue("s3_endpoint"))


@pytest.fixture(scope="module", params=BACKENDS)
def shared_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    ) -> Settings:
    """Settings on one storage per backend shared by a whole module's tests.

    Only for cases that must leave the lake exactly as they found it (refusals) and check
    that they did: building a lake on S3 costs far more than such a case.
    """
    folder = tmp_path_factory.mktemp("shared")
    storage_settings = backend_storage(request.param, folder,
                                       lambda: request.getfixturevalue("s3_endpoint"))
    return make_settings(storage_settings, folder)


@pytest.fixture
def local_storage_settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(uri=str(tmp_path / "lake"))


@pytest.fixture
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    """Local, or once per backend in ``BACKEND_MODULES``."""
    return backend_storage(getattr(request, "param", "local"), tmp_path,
                           lambda: request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def storage(storage_settings: StorageSettings) -> Storage:
    return Storage.from_settings(storage_settings)


@pytest.fixture
def settings(storage_settings: StorageSettings, tmp_path: Path) -> Settings:
    """Full settings on ``storage_settings``, with every server on a free port."""
    return make_settings(storage_settings, tmp_path)


@pytest.fixture
def local_settings(local_storage_settings: StorageSettings, tmp_path: Path) -> Settings:
    """Full settings on local storage only, whatever the module."""
    return make_settings(local_storage_settings, tmp_path)


# -- servers ---------------------------------------------------------------------------


@pytest.fixture
def serve(storage_settings: StorageSettings, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(storage=None, **sections)``: a started Server on free ports, stopped after.

    ``storage`` defaults to ``storage_settings``; each keyword is a settings section whose
    values replace the defaults, e.g. ``serve(ingest={"max_concurrent_ingests": 1})`` or
    ``serve(http={"enabled": False})``.
    """
    started: list[Server] = []

    def start(storage: StorageSettings | None = None, **sections: dict) -> Server:
        server = Server(make_settings(storage or storage_settings, tmp_path, **sections))
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """A server with the default settings (Flight and HTTP) on local storage."""
    return serve()


@pytest.fixture
def flight_client(server: Server) -> Iterator[flight.FlightClient]:
    """A raw pyarrow.flight client of ``server``."""
    with flight.connect(server.flight_uri) as client:
        yield client


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """``serve_process(*args, cwd=tmp_path, env=None)``: ``flight-lake serve`` on port 0."""
    started: list[ServeProcess] = []

    def start(*args: str, cwd: Path = tmp_path, env: dict[str, str] | None = None
              ) -> ServeProcess:
        process = ServeProcess(cwd, *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
