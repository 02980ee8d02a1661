"""Finding 6: ``catalog.register`` no longer trusts its keys.

Duplicated keys, or keys the current version already holds, doubled the row count. Only
objects under the dataset's own prefix that no other dataset references may be registered.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_lake.catalog import Catalog, DataObject
from flight_lake.errors import Conflict, InvalidInput
from flight_lake.settings import StorageSettings
from flight_lake.storage import Storage

TABLE = pa.table({"id": [1, 2, 3]})


@pytest.fixture
def storage(local_storage_settings: StorageSettings) -> Storage:
    return Storage.from_settings(local_storage_settings)  # the rules know no backend


def put(storage: Storage, key: str, table: pa.Table = TABLE) -> DataObject:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    storage.put(key, sink.getvalue())
    return DataObject(key=key, size=len(sink.getvalue()), row_count=table.num_rows)


def test_duplicated_keys_are_refused(storage: Storage) -> None:
    key = put(storage, "datasets/x/manual/part-0.parquet").key
    catalog = Catalog(storage)
    with pytest.raises(InvalidInput, match="more than once"):
        catalog.register("x", [key, key])
    assert catalog.history("x") == []
    assert catalog.register("x", [key]).row_count == 3


def test_keys_the_current_version_holds_are_not_appended_again(storage: Storage) -> None:
    first = put(storage, "datasets/x/manual/part-0.parquet").key
    second = put(storage, "datasets/x/manual/part-1.parquet").key
    catalog = Catalog(storage)
    catalog.register("x", [first])
    with pytest.raises(Conflict, match="already"):
        catalog.register("x", [first], mode="append")
    with pytest.raises(Conflict, match="already"):
        catalog.register("x", [second, first], mode="append")
    assert catalog.get("x").row_count == 3 and catalog.history("x") == [1]
    assert catalog.register("x", [second], mode="append").row_count == 6
    # the same holds for any commit, not just register
    with pytest.raises(Conflict, match="already"):
        catalog.commit("x", "append", TABLE.schema, [DataObject(key=second, size=1, row_count=3)])
    # replacing with the same set (a retried register) is not a doubling
    assert catalog.register("x", [first, second], mode="replace").row_count == 6


def test_keys_another_dataset_references_are_refused(storage: Storage) -> None:
    shared = put(storage, "datasets/y/manual/part-0.parquet")
    catalog = Catalog(storage)
    # an older server let a commit point outside its own prefix; register must not share it
    catalog.commit("x", "create", TABLE.schema, [shared])
    with pytest.raises(Conflict, match="dataset x"):
        catalog.register("y", [shared.key])
    assert catalog.history("y") == []


@pytest.mark.parametrize("key", [
    "datasets/other/manual/part-0.parquet",
    "datasets/xx/manual/part-0.parquet",
    "datasets/x/../y/manual/part-0.parquet",
    "datasets/x/manual/part-0.csv",
    "_catalog/manifests/x/0000000001.parquet",
    "datasets/x",
])
def test_keys_outside_the_dataset_prefix_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidInput):
        Catalog(storage).register("x", [key])
