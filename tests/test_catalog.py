"""The catalog on both backends: modes, idempotent registration, restarts, racing writers."""

from __future__ import annotations

import io
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_lake.catalog import (
    FULL_CHECK_EVERY,
    PULSE,
    Catalog,
    DataObject,
    new_version_id,
    schema_fingerprint,
)
from flight_lake.errors import Conflict, InvalidInput, NotFound
from flight_lake.settings import Settings
from flight_lake.storage import Storage

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
OTHER = pa.schema([("id", pa.int64()), ("name", pa.string()), ("extra", pa.float64())])


def put_parquet(storage: Storage, key: str, table: pa.Table) -> DataObject:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    storage.put(key, sink.getvalue())
    return DataObject(key=key, size=len(sink.getvalue()), row_count=table.num_rows)


def objects(n: int, rows: int = 10) -> list[DataObject]:
    return [DataObject(key=f"datasets/x/v{n}/part-0.parquet", size=100, row_count=rows)]


def test_create_append_replace(storage: Storage) -> None:
    catalog = Catalog(storage)
    first = catalog.commit("x", "create", SCHEMA, objects(1))
    assert (first.version, first.row_count, first.size_bytes) == (1, 10, 100)
    appended = catalog.commit("x", "append", SCHEMA, objects(2, rows=5))
    assert appended.version == 2 and appended.row_count == 15
    assert [o.key for o in appended.objects] == [o.key for o in objects(1) + objects(2)]
    assert appended.dataset_id == first.dataset_id
    assert appended.created_at == first.created_at and appended.updated_at > first.updated_at
    replaced = catalog.commit("x", "replace", OTHER, objects(3, rows=7))
    assert replaced.row_count == 7 and [o.key for o in replaced.objects] == [objects(3)[0].key]
    assert replaced.schema_fingerprint == schema_fingerprint(OTHER)
    assert replaced.arrow_schema().equals(OTHER)
    assert catalog.history("x") == [1, 2, 3]


def test_manifest_json_has_the_contract_fields(storage: Storage) -> None:
    manifest = Catalog(storage).commit("x", "create", SCHEMA, objects(1)).to_json_dict()
    for field in ("dataset_id", "name", "version", "schema_fingerprint", "schema", "objects",
                  "row_count", "size_bytes", "created_at", "updated_at"):
        assert field in manifest
    assert manifest["schema"] == [{"name": "id", "type": "int64", "nullable": True},
                                  {"name": "name", "type": "string", "nullable": True}]
    assert manifest["objects"][0] == {"key": "datasets/x/v1/part-0.parquet", "size": 100,
                                      "row_count": 10}


def test_same_name_and_fingerprint_keeps_the_dataset_id(storage: Storage) -> None:
    catalog = Catalog(storage)
    first = catalog.commit("x", "create", SCHEMA, objects(1))
    again = catalog.commit("x", "create", SCHEMA, objects(2))
    assert again.dataset_id == first.dataset_id and again.version == 2
    with pytest.raises(Conflict):
        catalog.commit("x", "create", OTHER, objects(3))
    with pytest.raises(Conflict):
        catalog.commit("x", "append", OTHER, objects(3))
    with pytest.raises(NotFound):
        catalog.commit("y", "append", SCHEMA, objects(3))
    assert catalog.history("x") == [1, 2] and catalog.history("y") == []


def test_check_writable_fails_fast(storage: Storage) -> None:
    catalog = Catalog(storage)
    with pytest.raises(NotFound):
        catalog.check_writable("x", "append")
    catalog.commit("x", "create", SCHEMA, objects(1))
    catalog.check_writable("x", "create", SCHEMA)
    with pytest.raises(Conflict):
        catalog.check_writable("x", "create", OTHER)
    with pytest.raises(InvalidInput):
        catalog.check_writable("x", "upsert")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def refusing(shared_settings: Settings) -> Storage:
    """One storage per backend for the refusal cases: each must leave it empty."""
    return Storage.from_settings(shared_settings.storage)


@pytest.mark.parametrize("name", ["", "X", "1abc", "a-b", "a b", "a" * 64, "../x", "a.b"])
def test_bad_names_are_refused_before_storage(refusing: Storage, name: str) -> None:
    storage = refusing
    with pytest.raises(InvalidInput, match="invalid dataset name"):
        Catalog(storage).commit(name, "create", SCHEMA, objects(1))
    assert storage.list() == []


def test_catalog_survives_a_restart(storage: Storage) -> None:
    catalog = Catalog(storage)
    catalog.commit("a", "create", SCHEMA, objects(1))
    catalog.commit("b", "create", OTHER, objects(2))
    catalog.commit("a", "append", SCHEMA, objects(3))
    reopened = Catalog(storage)
    assert [m.name for m in reopened.list()] == ["a", "b"]
    assert reopened.get("a") == catalog.get("a")
    assert reopened.get("b").arrow_schema().equals(OTHER)


def test_unknown_dataset_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound, match="unknown dataset: nope"):
        Catalog(storage).get("nope")


def test_racing_catalogs_lose_no_append(storage: Storage) -> None:
    """Two server processes (two Catalog objects) appending at once: every object lands."""
    Catalog(storage).commit("x", "create", SCHEMA, [])
    catalogs = [Catalog(storage) for _ in range(4)]
    barrier = threading.Barrier(len(catalogs))
    errors: list[BaseException] = []

    def append(index: int) -> None:
        barrier.wait()
        try:
            for n in range(3):
                catalogs[index].commit("x", "append", SCHEMA, objects(index * 10 + n, rows=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(len(catalogs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = Catalog(storage).get("x")
    assert final.version == 13 and final.row_count == 12
    assert len({o.key for o in final.objects}) == 12
    assert Catalog(storage).history("x") == list(range(1, 14))


def test_listeners_hear_every_commit(storage: Storage) -> None:
    catalog = Catalog(storage)
    heard: list[tuple[str, int]] = []
    catalog.subscribe(lambda manifest: heard.append((manifest.name, manifest.version)))
    catalog.commit("x", "create", SCHEMA, objects(1))
    catalog.commit("x", "append", SCHEMA, objects(2))
    assert heard == [("x", 1), ("x", 2)]


def test_register_reads_schema_and_rows_from_the_objects(storage: Storage) -> None:
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", None]})
    first = put_parquet(storage, "datasets/x/manual/part-0.parquet", table)
    second = put_parquet(storage, "datasets/x/manual/part-1.parquet", table.slice(0, 1))
    catalog = Catalog(storage)
    manifest = catalog.register("x", [first.key, second.key])
    assert manifest.row_count == 4
    assert manifest.arrow_schema().equals(table.schema)
    assert catalog.register("x", [first.key]).dataset_id == manifest.dataset_id
    with pytest.raises(InvalidInput, match=r"must be a \.parquet under datasets/x/"):
        catalog.register("x", ["datasets/other/part-0.parquet"])
    with pytest.raises(NotFound):
        catalog.register("x", ["datasets/x/missing.parquet"])
    storage.put("datasets/x/junk.parquet", b"not parquet")
    with pytest.raises(InvalidInput, match="not a Parquet file"):
        catalog.register("x", ["datasets/x/junk.parquet"])
    put_parquet(storage, "datasets/x/other.parquet", pa.table({"z": [1.0]}))
    with pytest.raises(InvalidInput, match="different schema"):
        catalog.register("x", [first.key, "datasets/x/other.parquet"])
    assert catalog.history("x") == [1, 2]


def test_garbage_collection_spares_referenced_recent_and_foreign_folders(
    storage: Storage,
) -> None:
    catalog = Catalog(storage)
    table = pa.table({"id": [1], "name": ["a"]})
    kept = put_parquet(storage, "datasets/x/20200101T000000-aaaaaaaaaaaa/part-0.parquet", table)
    catalog.commit("x", "create", SCHEMA, [kept])
    put_parquet(storage, "datasets/x/20200101T000001-bbbbbbbbbbbb/part-0.parquet", table)
    put_parquet(storage, "datasets/x/manual/part-0.parquet", table)
    recent = new_version_id()
    put_parquet(storage, f"datasets/x/{recent}/part-0.parquet", table)
    replaced_by = put_parquet(storage, "datasets/x/20200101T000002-cccccccccccc/p.parquet", table)
    catalog.commit("x", "replace", SCHEMA, [replaced_by])  # version 1 still references `kept`

    removed = catalog.collect_garbage(grace_seconds=3600)
    assert removed == ["datasets/x/20200101T000001-bbbbbbbbbbbb"]
    left = {o.key.split("/")[2] for o in storage.list("datasets/x")}
    assert left == {"20200101T000000-aaaaaaaaaaaa", "20200101T000002-cccccccccccc", "manual",
                    recent}


# -- replicas: other servers' commits -----------------------------------------------------


def test_refresh_finds_another_catalogs_commits_with_one_read_when_idle(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers' catalogs over one storage: the change check reads the pulse only, and
    lists the manifests only after a commit elsewhere; listeners hear of it."""
    writer, follower = Catalog(storage), Catalog(storage)
    heard: list[tuple[str, int]] = []
    follower.subscribe(lambda manifest: heard.append((manifest.name, manifest.version)))
    own: list[int] = []  # a listener for this server's own commits only
    follower.subscribe(lambda manifest: own.append(manifest.version), remote=False)
    listings: list[str] = []
    real_list = storage.list
    monkeypatch.setattr(storage, "list", lambda prefix="": listings.append(prefix)
                        or real_list(prefix))

    assert follower.refresh() == [] and listings == []  # nothing changed: the pulse only
    writer.commit("x", "create", SCHEMA, objects(1))
    writer.commit("x", "append", SCHEMA, objects(2))
    writer.commit("y", "create", OTHER, objects(3))
    with pytest.raises(NotFound):
        follower.get("x")  # not yet looked
    assert sorted((m.name, m.version) for m in follower.refresh()) == [("x", 2), ("y", 1)]
    assert len(listings) == 1
    assert follower.get("x") == writer.get("x") and heard == [("x", 2), ("y", 1)]
    assert follower.refresh() == [] and len(listings) == 1
    assert own == [] and follower.commit("x", "append", SCHEMA, objects(4)).version == 3
    assert own == [3] and heard[-1] == ("x", 3)


def test_a_commit_whose_pulse_was_lost_is_found_by_the_periodic_full_check(
        storage: Storage) -> None:
    """A server that died between its manifest and its pulse: the others still find it."""
    writer, follower = Catalog(storage), Catalog(storage)
    before = storage.get(PULSE) if storage.exists(PULSE) else b""
    writer.commit("x", "create", SCHEMA, objects(1))
    storage.put(PULSE, before)  # as if the pulse had never been rewritten
    found = [follower.refresh() for _ in range(FULL_CHECK_EVERY)]
    assert [len(manifests) for manifests in found] == [0] * (FULL_CHECK_EVERY - 1) + [1]
    assert follower.get("x") == writer.get("x")


def test_a_write_starts_from_the_storages_latest_version(storage: Storage) -> None:
    """Appending through a server that has not looked yet: it reads the latest first."""
    first, second = Catalog(storage), Catalog(storage)
    first.commit("x", "create", SCHEMA, objects(1))
    second.check_writable("x", "append", SCHEMA)  # would be NotFound from its own view
    with pytest.raises(Conflict, match="schema does not match"):
        second.check_writable("x", "append", OTHER)
    assert second.commit("x", "append", SCHEMA, objects(2)).version == 2
    assert second.refresh_dataset("y") is None


def test_collection_spares_a_folder_committed_while_it_looked_at_the_lease(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest on another server commits, then drops its lease, between the collection's
    reading of the manifests and its look at the lease: the folder is referenced now."""
    catalog = Catalog(storage)
    table = pa.table({"id": [1], "name": ["a"]})
    late = put_parquet(storage, "datasets/x/20200101T000000-aaaaaaaaaaaa/p.parquet", table)
    crashed = put_parquet(storage, "datasets/x/20200101T000001-bbbbbbbbbbbb/p.parquet", table)
    catalog.commit("x", "create", SCHEMA, [crashed])
    catalog.commit("x", "replace", SCHEMA, [])
    other_server = Catalog(storage)

    def lease_gone_after_commit(prefix: str, lease_seconds: float) -> bool:
        if prefix.endswith("aaaaaaaaaaaa"):
            other_server.commit("x", "append", SCHEMA, [late])
        return False

    monkeypatch.setattr(catalog, "_leased", lease_gone_after_commit)
    assert catalog.collect_garbage(grace_seconds=0) == []  # `crashed` is version 1's
    assert storage.exists(late.key) and Catalog(storage).get("x").objects == [late]
