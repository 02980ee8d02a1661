"""One dataset version as one Iceberg commit, made by pyiceberg's own transactions.

``commit_version`` takes the table as the previous version left it (or none) and the
version's manifest, and commits one snapshot: a ``create`` of a new dataset or an ``append``
adds the new objects (an append snapshot), a ``replace`` or a ``create`` over an existing
dataset swaps every file (an overwrite snapshot). Data files are described from the objects'
Parquet footers by pyiceberg (``parquet_file_to_data_file``), never copied or rewritten.

pyiceberg has no Hadoop catalog, so ``_VersionCatalog`` is the smallest catalog that lets
its transactions commit: pyiceberg computes the new metadata, and the catalog writes it as
``v<N>.metadata.json`` (N = the manifest version) with the storage's create-only put. Of two
servers mirroring the same version, exactly one write wins; the other loads the winner's
(``VersionTaken``). Importing this module imports pyiceberg (about a second), so
:mod:`flight_lake.iceberg.tables` imports it on first use.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.catalog.noop import NoopCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io import load_file_io
from pyiceberg.io.pyarrow import parquet_file_to_data_file, pyarrow_to_schema
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import (
    CommitTableResponse,
    CreateTableTransaction,
    StagedTable,
    Table,
    TableProperties,
    Transaction,
)
from pyiceberg.table.metadata import TableMetadata, TableMetadataUtil
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.table.update import (
    AddPartitionSpecUpdate,
    AddSchemaUpdate,
    AddSortOrderUpdate,
    AssertCurrentSchemaId,
    RemoveSnapshotsUpdate,
    SetCurrentSchemaUpdate,
    SetDefaultSortOrderUpdate,
    SetDefaultSpecUpdate,
    TableRequirement,
    TableUpdate,
)
from pyiceberg.transforms import IdentityTransform

from flight_lake.catalog import Manifest
from flight_lake.iceberg.field_ids import with_field_ids
from flight_lake.iceberg.layout import NAMESPACE, metadata_key, table_url
from flight_lake.layout import Layout
from flight_lake.settings import SNAPSHOTS_KEPT
from flight_lake.storage import Storage

VERSION_PROPERTY = "flight-lake.version"
"""Snapshot summary key: the manifest version a snapshot mirrors."""
MERGE_MANIFESTS_AT = 100
"""Manifests in a snapshot past which an append merges them (Iceberg's own default)."""
FIRST_PARTITION_FIELD_ID = 1000  # Iceberg numbers partition fields from 1000


class VersionTaken(CommitFailedException):
    """Another server wrote this version's metadata first (load theirs and go on).

    A ``CommitFailedException``, so pyiceberg removes the manifests it wrote for the lost
    commit before raising it on."""


class UnsupportedSchema(Exception):
    """The dataset's Arrow schema has a type Iceberg cannot hold (e.g. uint64, ns times)."""


def iceberg_schema(manifest: Manifest) -> Schema:
    """The Iceberg schema of ``manifest``'s version, IDs as in its Parquet objects."""
    try:
        return pyarrow_to_schema(with_field_ids(manifest.arrow_schema()))
    except Exception as exc:  # pyiceberg raises TypeError, ValueError or its own
        raise UnsupportedSchema(str(exc)) from exc


def load_version(storage: Storage, properties: dict[str, str], name: str,
                 version: int) -> Table:
    """The table as its ``v<version>.metadata.json`` describes it (``NotFound`` if absent)."""
    key = metadata_key(name, version)
    metadata = TableMetadataUtil.parse_raw(storage.get(key).decode())
    location = storage.url(key)
    return Table(identifier=(NAMESPACE, name), metadata=metadata, metadata_location=location,
                 io=load_file_io({**properties, **metadata.properties}, location),
                 catalog=NoopCatalog("flight_lake"))


def commit_version(storage: Storage, properties: dict[str, str], base: Table | None,
                   previous: Manifest | None, manifest: Manifest,
                   snapshots_kept: int = SNAPSHOTS_KEPT) -> Table:
    """Commit ``manifest`` as the snapshot after ``base``'s (``base`` None: a new table);
    ``previous`` is the manifest ``base`` mirrors. The metadata lists the newest
    ``snapshots_kept`` snapshots (without a bound, each commit's metadata grew).

    Raises ``VersionTaken`` if its metadata file exists already, ``UnsupportedSchema``.
    """
    schema = iceberg_schema(manifest)
    catalog = _VersionCatalog(storage, manifest.name, manifest.version, properties)
    spec, order = partition_spec(schema, manifest.layout), sort_order(schema, manifest.layout)
    table_properties = {
        TableProperties.DEFAULT_NAME_MAPPING: schema.name_mapping.model_dump_json(),
        # A lost race is final: the winner's metadata is loaded, not committed over.
        TableProperties.COMMIT_NUM_RETRIES: "0",
        # Appends merge the table's manifests once there are many: a snapshot's manifest
        # list does not grow with every append for good.
        TableProperties.MANIFEST_MERGE_ENABLED: "true",
        TableProperties.MANIFEST_MIN_MERGE_COUNT: str(MERGE_MANIFESTS_AT),
        # Whole values in the column statistics of partition columns: pyiceberg reads each
        # object's partition value from them, and truncated strings would not match.
        **{f"write.metadata.metrics.column.{column}": "full"
           for column in manifest.layout.partition_by}}
    summary = {VERSION_PROPERTY: str(manifest.version)}
    location = table_url(storage, manifest.name)
    io = load_file_io(properties, location)
    paths = [storage.url(data_object.key) for data_object in manifest.objects]
    held = {storage.url(o.key) for o in previous.objects} if previous and base else set()
    # An append keeps every file the table holds; anything else swaps them all.
    overwrite = bool(held) and (manifest.replaced is not None or not held <= set(paths))
    if base is None:
        transaction: Any = _CreateTransaction(catalog._create_staged_table(
            (NAMESPACE, manifest.name), schema, location=location, partition_spec=spec,
            sort_order=order,
            properties={**table_properties, TableProperties.FORMAT_VERSION: "2"}))
        if transaction.table_metadata.schema().as_struct() != schema.as_struct():
            raise UnsupportedSchema("pyiceberg numbered the columns differently")
    else:
        table = Table(identifier=(NAMESPACE, manifest.name), metadata=base.metadata,
                      metadata_location=base.metadata_location, io=base.io, catalog=catalog)
        transaction = _Transaction(table)
        _use_schema(transaction, schema)
        _use_layout(transaction, spec, order)
        if any(base.metadata.properties.get(k) != v for k, v in table_properties.items()):
            transaction.set_properties(table_properties)
    metadata = transaction.table_metadata  # computed once: each access re-applies updates
    snapshot = transaction.update_snapshot(snapshot_properties=summary)
    with snapshot.overwrite() if overwrite else snapshot.merge_append() as producer:
        if overwrite:  # the table's own entries: the files of the manifest it mirrors
            for task in table.scan().plan_files():
                producer.delete_data_file(task.file)
        for path in paths:
            if overwrite or path not in held:
                producer.append_data_file(parquet_file_to_data_file(io, metadata, path))
    if base is not None:
        _expire(transaction, base, snapshots_kept)
    return transaction.commit_transaction()


def _expire(transaction: Any, base: Table, kept: int) -> None:
    """Drop the oldest snapshots from the metadata past ``kept`` (with this commit's).
    Nothing is deleted: their files stay, as do the metadata files that list them (an
    older version is read from its own), and the lake's manifests keep every version."""
    snapshots = sorted(base.metadata.snapshots, key=lambda s: s.sequence_number or 0)
    surplus = len(snapshots) + 1 - kept
    if surplus > 0:
        transaction._apply((RemoveSnapshotsUpdate(
            snapshot_ids=[s.snapshot_id for s in snapshots[:surplus]]),))


def partition_spec(schema: Schema, layout: Layout) -> PartitionSpec:
    """Identity partitions on the layout's ``partition_by`` columns (their Hive folders)."""
    return PartitionSpec(*(
        PartitionField(source_id=schema.find_field(column).field_id,
                       field_id=FIRST_PARTITION_FIELD_ID + index,
                       transform=IdentityTransform(), name=column)
        for index, column in enumerate(layout.partition_by)))


def sort_order(schema: Schema, layout: Layout) -> SortOrder:
    """The order the layout writes rows in (ascending, nulls last, as DuckDB sorts them)."""
    return SortOrder(*(
        SortField(source_id=schema.find_field(column).field_id, transform=IdentityTransform(),
                  direction=SortDirection.ASC, null_order=NullOrder.NULLS_LAST)
        for column in layout.order), order_id=1 if layout.order else 0)


def _use_schema(transaction: Any, schema: Schema) -> None:
    """Make ``schema`` (with its own IDs) the table's current schema, if it is not yet."""
    metadata = transaction.table_metadata
    current = metadata.schema()
    if current.as_struct() == schema.as_struct():
        return
    known = [s for s in metadata.schemas if s.as_struct() == schema.as_struct()]
    updates: tuple[TableUpdate, ...]
    if known:
        updates = (SetCurrentSchemaUpdate(schema_id=known[0].schema_id),)
    else:
        added = Schema(*schema.fields, schema_id=max(s.schema_id for s in metadata.schemas) + 1)
        updates = (AddSchemaUpdate(schema_=added), SetCurrentSchemaUpdate(schema_id=-1))
    requirements: tuple[TableRequirement, ...] = (
        AssertCurrentSchemaId(current_schema_id=current.schema_id),)
    transaction._apply(updates, requirements)


def _use_layout(transaction: Any, spec: PartitionSpec, order: SortOrder) -> None:
    """Make ``spec`` and ``order`` the table's defaults, if they are not yet (a replace may
    change the layout; an append keeps it)."""
    metadata = transaction.table_metadata
    updates: list[TableUpdate] = []
    wanted = [(f.source_id, f.name) for f in spec.fields]
    known_specs = [s for s in metadata.partition_specs
                   if [(f.source_id, f.name) for f in s.fields] == wanted]
    if [(f.source_id, f.name) for f in metadata.spec().fields] != wanted:
        if known_specs:
            updates.append(SetDefaultSpecUpdate(spec_id=known_specs[0].spec_id))
        else:
            first = max(metadata.last_partition_id or 0, FIRST_PARTITION_FIELD_ID - 1) + 1
            fields = [field.model_copy(update={"field_id": first + index})
                      for index, field in enumerate(spec.fields)]
            spec_id = max(s.spec_id for s in metadata.partition_specs) + 1
            updates += [AddPartitionSpecUpdate(spec=PartitionSpec(*fields, spec_id=spec_id)),
                        SetDefaultSpecUpdate(spec_id=-1)]
    ordered = [(f.source_id, f.direction) for f in order.fields]
    known_orders = [o for o in metadata.sort_orders
                    if [(f.source_id, f.direction) for f in o.fields] == ordered]
    if [(f.source_id, f.direction) for f in metadata.sort_order().fields] != ordered:
        if known_orders:
            updates.append(SetDefaultSortOrderUpdate(sort_order_id=known_orders[0].order_id))
        else:
            order_id = max(o.order_id for o in metadata.sort_orders) + 1
            updates += [AddSortOrderUpdate(sort_order=SortOrder(*order.fields,
                                                                order_id=order_id)),
                        SetDefaultSortOrderUpdate(sort_order_id=-1)]
    if updates:
        transaction._apply(tuple(updates))


class _MetadataOnce:
    """A transaction whose metadata is computed once per change, not on every look.

    pyiceberg's ``Transaction.table_metadata`` applies every pending update to a deep copy
    of the base metadata each time it is read, and a commit reads it about 17 times: with
    the snapshot log growing, that was most of a commit's time. The answer is kept while
    the base metadata and the (immutable) tuple of updates are the same objects.
    """

    _table: Table
    _updates: tuple[TableUpdate, ...]
    _computed: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        known = self._computed
        if known is None or known[0] is not base or known[1] is not updates:
            known = self._computed = (base, updates, super().table_metadata)  # type: ignore[misc]
        return known[2]


class _Transaction(_MetadataOnce, Transaction):
    """pyiceberg's transaction on an existing table, metadata computed once per change."""


class _CreateTransaction(_MetadataOnce, CreateTableTransaction):
    """pyiceberg's table-creating transaction, metadata computed once per change."""


class _VersionCatalog(MetastoreCatalog, NoopCatalog):
    """Commits pyiceberg's metadata as ``v<version>.metadata.json``, create-only.

    Every catalog operation but creating a table and committing one is NoopCatalog's
    (``NotImplementedError``): nothing else is needed to mirror the manifests.
    """

    def __init__(self, storage: Storage, dataset: str, version: int,
                 properties: dict[str, str]) -> None:
        super().__init__("flight_lake", **properties)
        self._storage, self._dataset, self._version = storage, dataset, version

    def commit_table(self, table: Table, requirements: tuple[TableRequirement, ...],
                     updates: tuple[TableUpdate, ...]) -> CommitTableResponse:
        base = None if isinstance(table, StagedTable) else table
        staged = self._update_and_stage_table(base, table.name(), requirements, updates)
        key = metadata_key(self._dataset, self._version)
        if not self._storage.put_if_absent(key, staged.metadata.model_dump_json().encode()):
            raise VersionTaken(f"{key} exists: another server mirrored this version")
        return CommitTableResponse(metadata=staged.metadata,
                                   metadata_location=self._storage.url(key))

    def load_table(self, identifier: str | tuple[str, ...]) -> Table:
        """pyiceberg reloads here to retry a lost commit: the version is taken, stop."""
        raise VersionTaken(f"v{self._version}.metadata.json of {self._dataset} is taken")
