"""Replicas: several ``flight-lake serve`` processes over one storage act as one lake.

Three server processes over one moto S3 bucket (with users: a token from one is good on
every other) and two over one folder, started once per module: concurrent commits through
different processes lose no version, every replica ends up agreeing, a commit shows at once
on its own replica and within ``catalog.refresh_seconds`` on the others, GetFlightInfo
spreads a dataset's objects over ``cluster.peers`` and ``read_dataset`` follows them, and a
replica starting up never collects the objects another one's running ingest is writing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage
from flight_lake_client import FlightLakeClient, connect
from flight_lake_client.errors import LakeError, NotFound
from tests.support import (
    PASSWORDS,
    ServeProcess,
    auth_section,
    s3_storage,
    wait_until,
)

pytestmark = pytest.mark.slow

REFRESH_SECONDS = 0.5
ROWS_PER_PART = 1000  # small, so a few thousand rows make several objects (endpoints)
USER = "admin1"


def rows(first: int, count: int) -> pa.Table:
    ids = pa.array(range(first, first + count), pa.int64())
    return pa.table({"id": ids, "label": pa.array([f"row {i}" for i in range(first,
                                                                          first + count)])})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{key} = {_toml(item)}" for key, item in value.items())
    return json.dumps(value)  # strings, numbers, booleans and lists read the same in TOML


@dataclass
class Replicas:
    """Server processes over one storage, and how to reach them."""

    storage: StorageSettings
    processes: list[ServeProcess]
    auth: bool
    watchers: dict[int, FlightLakeClient] = field(default_factory=dict)

    def watcher(self, index: int) -> FlightLakeClient:
        """A client of replica ``index`` kept open for polling (one login, not one a poll)."""
        if index not in self.watchers:
            self.watchers[index] = self.client(index)
        return self.watchers[index]

    def close(self) -> None:
        for lake in self.watchers.values():
            lake.close()
        for process in self.processes:
            process.kill()

    @property
    def uris(self) -> list[str]:
        return [process.flight_uri for process in self.processes]

    def client(self, index: int) -> FlightLakeClient:
        if self.auth:
            return connect(self.uris[index], user=USER, password=PASSWORDS[USER])
        return connect(self.uris[index])


def start_replicas(folder: Path, storage: StorageSettings, count: int, *, auth: bool,
                   peers: bool, **sections: dict[str, Any]) -> list[ServeProcess]:
    """``count`` ``flight-lake serve`` processes on ``storage``, started side by side."""
    ports = [free_port() for _ in range(count)]
    uris = [f"grpc://127.0.0.1:{port}" for port in ports]
    env = {}
    if auth:
        section = auth_section()
        env = {"FLIGHT_LAKE_AUTH__SIGNING_KEY": section["signing_key"],
               "FLIGHT_LAKE_AUTH__USERS": json.dumps(section["users"])}

    def start(index: int) -> ServeProcess:
        home = folder / f"replica-{index}"
        home.mkdir(parents=True)
        config = {
            "storage": {key: value.get_secret_value() if hasattr(value, "get_secret_value")
                        else value for key, value in storage.model_dump().items()
                        if value is not None},
            "flight": {"advertise_uri": uris[index]},
            "catalog": {"refresh_seconds": REFRESH_SECONDS},
            "cluster": {"peers": [uri for uri in uris if uri != uris[index]] if peers
                        else []},
            # An upload held open while another replica starts (slowly, on a busy machine)
            # must not be given up as idle or slow.
            "ingest": {"rows_per_part": ROWS_PER_PART, "spool_dir": str(home),
                       "upload_idle_seconds": 600, "upload_min_bytes_per_second": 0},
        }
        for name, values in sections.items():
            config[name] = {**config.get(name, {}), **values}
        text = "\n".join(f"[{name}]\n{_toml(values)}\n" for name, values in config.items())
        (home / "lake.toml").write_text(text)
        return ServeProcess(home, "--config", str(home / "lake.toml"), "--no-http",
                            "--flight-port", str(ports[index]), env=env)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


@pytest.fixture(scope="module")
def on_s3(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Three replicas over one bucket, each with the other two as peers, users on."""
    storage = s3_storage(s3_endpoint)
    processes = start_replicas(tmp_path_factory.mktemp("s3-replicas"), storage, 3,
                               auth=True, peers=True)
    replicas = Replicas(storage, processes, auth=True)
    yield replicas
    replicas.close()


@pytest.fixture(scope="module")
def on_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Two replicas over one folder."""
    folder = tmp_path_factory.mktemp("folder-replicas")
    storage = StorageSettings(uri=str(folder / "lake"))
    processes = start_replicas(folder, storage, 2, auth=False, peers=False)
    replicas = Replicas(storage, processes, auth=False)
    yield replicas
    replicas.close()


def agreed(replicas: Replicas) -> dict[str, tuple[int, int]]:
    """Each dataset's (version, rows), once every replica says the same; else {}."""
    views = [{m.name: (m.version, m.row_count) for m in replicas.watcher(index).datasets()}
             for index in range(len(replicas.processes))]
    return views[0] if all(view == views[0] for view in views) else {}


# -- concurrent commits through different processes ----------------------------------------


def test_three_replicas_over_s3_act_as_one_lake(on_s3: Replicas, tmp_path: Path) -> None:
    """One test, so one set of processes serves every check whichever worker runs it."""
    check_concurrent_ingests_lose_no_version(on_s3)
    check_a_commit_shows_at_once_where_made_and_soon_elsewhere(on_s3)
    check_read_dataset_follows_endpoints_spread_over_the_peers(on_s3)
    check_a_starting_replica_never_collects_a_running_ingests_objects(on_s3, tmp_path)


def test_two_replicas_over_a_folder_lose_no_version(on_folder: Replicas) -> None:
    check_concurrent_ingests_lose_no_version(on_folder)


def check_concurrent_ingests_lose_no_version(replicas: Replicas) -> None:
    count = len(replicas.processes)
    appends_each = 3
    with replicas.client(0) as lake:
        lake.ingest(rows(0, 10), name="shared")
        lake.ingest(rows(0, 1), name="swapped")

    def work(index: int) -> list[int]:
        versions = []
        with replicas.client(index) as lake:
            for n in range(appends_each):
                first = 1000 * (index + 1) + 10 * n
                versions.append(lake.ingest(rows(first, 10), name="shared",
                                            mode="append").version)
            versions.append(lake.ingest(rows(0, index + 2), name="swapped",
                                        mode="replace").version)
            lake.ingest(rows(0, 5 + index), name=f"own_{index}")
        return versions

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(work, range(count)))
    appended = [v for versions in answers for v in versions[:-1]]
    replaced = [versions[-1] for versions in answers]
    assert sorted(appended) == sorted(set(appended))  # each append its own version
    assert sorted(replaced) == list(range(2, 2 + count))

    expected_shared = (1 + count * appends_each, 10 + 10 * count * appends_each)
    wait_until(lambda: agreed(replicas).get("shared") == expected_shared, 30,
               "every replica agreeing on shared")
    wait_until(lambda: len(agreed(replicas)) == 2 + count, 30, "every dataset everywhere")
    final = agreed(replicas)
    assert final["swapped"][0] == 1 + count  # every replace is a version
    assert final["swapped"][1] in {index + 2 for index in range(count)}
    assert all(final[f"own_{index}"] == (1, 5 + index) for index in range(count))
    for index in range(count):  # DuckDB's views agree too, and no row came twice
        with replicas.client(index) as lake:
            counted = lake.sql("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM shared")
            assert counted.to_pylist() == [{"n": expected_shared[1],
                                            "ids": expected_shared[1]}]
    storage = Storage.from_settings(replicas.storage)
    manifests = [o.key for o in storage.list("_catalog/manifests/shared")]
    assert len(manifests) == expected_shared[0]  # versions 1..n, none lost or doubled


# -- visibility ---------------------------------------------------------------------------


def check_a_commit_shows_at_once_where_made_and_soon_elsewhere(on_s3: Replicas) -> None:
    """Read-your-writes on the committing replica; the others' views and caches follow."""
    with on_s3.client(0) as first, on_s3.client(1) as second, on_s3.client(2) as third:
        first.ingest(rows(0, 100), name="moving")
        wait_until(lambda: agreed(on_s3).get("moving") == (1, 100), 30, "the first version")
        for lake in (second, third):  # warm the scan path and DuckDB on the others
            assert lake.sql("SELECT * FROM moving").num_rows == 100
            assert lake.sql("SELECT max(id) AS m FROM moving").to_pylist() == [{"m": 99}]

        replaced = second.ingest(rows(500, 7), name="moving", mode="replace")
        assert replaced.version == 2
        assert second.sql("SELECT max(id) AS m FROM moving").to_pylist() == [{"m": 506}]
        assert second.manifest("moving").version == 2

        def followed(lake: FlightLakeClient) -> bool:
            return (lake.manifest("moving").version == 2
                    and lake.sql("SELECT max(id) AS m FROM moving").to_pylist() == [{"m": 506}]
                    and lake.sql("SELECT * FROM moving").num_rows == 7)

        wait_until(lambda: followed(first) and followed(third), 30,
                   "the other replicas following")


# -- endpoints over the peers -------------------------------------------------------------


def check_read_dataset_follows_endpoints_spread_over_the_peers(on_s3: Replicas) -> None:
    table = rows(0, 4 * ROWS_PER_PART + 10)  # five objects
    served_before = [_do_gets(process) for process in on_s3.processes]
    with on_s3.client(0) as lake:
        lake.ingest(table, name="spread")
        info = lake.flight_client.get_flight_info(flight.FlightDescriptor.for_path("spread"),
                                                  lake._options)
        locations = [[location.uri.decode() for location in endpoint.locations]
                     for endpoint in info.endpoints]
        assert locations == [[], [on_s3.uris[1]], [on_s3.uris[2]], [], [on_s3.uris[1]]]
        # Read at once: the peers may not have looked for the commit yet, and must.
        assert lake.read_dataset("spread").sort_by("id").equals(table)

    def served() -> list[int]:
        return [_do_gets(process) - before
                for process, before in zip(on_s3.processes, served_before, strict=True)]

    wait_until(lambda: served() == [2, 2, 1], 10, "each replica logging its objects")


def _do_gets(process: ServeProcess) -> int:
    return sum(1 for event in process.events() if event.get("event") == "flight_request"
               and event.get("method") == "do_get" and event.get("outcome") == "ok")


def test_an_object_on_a_peer_that_does_not_answer_comes_from_the_first_server(
        serve: Callable[..., Server]) -> None:
    """In-process: a live peer with no change check (it must look when asked), a dead one."""
    peer = serve(http={"enabled": False}, catalog={"refresh_seconds": 0})
    dead = f"grpc://127.0.0.1:{free_port()}"
    first = serve(http={"enabled": False}, ingest={"rows_per_part": ROWS_PER_PART},
                  cluster={"peers": [peer.flight_uri, dead]})
    table = rows(0, 3 * ROWS_PER_PART)
    with connect(first.flight_uri) as lake:
        lake.ingest(table, name="spread")
        assert peer.lake is not None
        assert [m.name for m in peer.lake.catalog.list()] == []  # it has not looked
        assert lake.read_dataset("spread").equals(table)
        assert lake.health()["replicas"]["peers"] == [peer.flight_uri, dead]
    assert peer.lake.health()["replicas"] == {"refresh_seconds": 0.0,
                                              "checked_seconds_ago": None, "peers": []}


# -- start-up collection across processes -------------------------------------------------


def check_a_starting_replica_never_collects_a_running_ingests_objects(
        on_s3: Replicas, tmp_path: Path) -> None:
    storage = Storage.from_settings(on_s3.storage)
    crashed = "datasets/slow/20200101T000000-aaaaaaaaaaaa/part-0.parquet"
    storage.put(crashed, b"left by a crashed ingest")
    release = threading.Event()
    answers: list[Any] = []

    def held() -> Iterator[pa.RecordBatch]:
        yield from rows(0, ROWS_PER_PART + 10).to_batches()  # one part complete
        assert release.wait(60)
        yield from rows(5000, 10).to_batches()

    first = rows(0, 1).schema

    def upload() -> None:
        try:
            with on_s3.client(1) as lake:
                reader = pa.RecordBatchReader.from_batches(first, held())
                answers.append(lake.ingest(reader, name="slow"))
        except LakeError as exc:  # reported by the assert below
            answers.append(exc)

    uploading = threading.Thread(target=upload, daemon=True)
    uploading.start()
    try:
        def written() -> list[str]:
            return [o.key for o in storage.list("datasets/slow")
                    if o.key.endswith(".parquet") and o.key != crashed]

        wait_until(written, 30, "the running ingest's first object")
        running = written()
        late = start_replicas(tmp_path, on_s3.storage, 1, auth=True, peers=False,
                              ingest={"gc_grace_seconds": 0})[0]
        try:
            done = late.wait_for("garbage_collection_done", 60)
            assert done["folders"] >= 1
            assert not storage.exists(crashed)  # collection ran and removes what it may
            assert all(storage.exists(key) for key in running)
        finally:
            late.kill()
    finally:
        release.set()
        uploading.join(60)
    assert [getattr(manifest, "row_count", manifest) for manifest in answers] == [
        ROWS_PER_PART + 20]
    with on_s3.client(2) as lake:
        wait_until(lambda: answer(lambda: lake.sql("SELECT count(*) AS n FROM slow")
                                  .to_pylist()) == [{"n": ROWS_PER_PART + 20}], 30,
                   "the committed ingest everywhere")


def answer(read: Callable[[], Any]) -> Any:
    """``read()``, or None while the replica does not know the dataset yet."""
    try:
        return read()
    except NotFound:
        return None
