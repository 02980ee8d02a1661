"""Staged uploads: many files, one dataset version, committed once (all files or none).

A client opens a transaction for one dataset and mode (``Staging.open``), stages each file
with its own upload (any number at once, each taking an ingest slot like a single upload),
and commits once: the staged files' objects become one version in one catalog commit.

- Every staged file writes its Parquet objects under the transaction's version folder,
  ``datasets/<name>/<version>/file-<n>/``; the folder keeps an ingest lease while the
  transaction lives, so no server's collection removes it, and nothing refers to it until
  the commit.
- The first file to be parsed fixes the column names and types (for ``append``, the
  dataset's own schema fixes them from the start); every other file must match, and a
  mismatch names the file and, for CSV, the line. A file parsed while the first is still
  being typed waits for it.
- Any failure of a staged file fails the whole transaction at once: its objects are
  deleted, later calls on it get the same error, and nothing is committed.
- A transaction idle (no file uploading, no call on it) for ``ingest.staging_seconds``
  expires: its objects are deleted and it is forgotten. At most
  ``ingest.max_open_transactions`` are open per server (``busy`` beyond), each with at most
  ``MAX_FILES`` files (``too_large`` beyond).
- A transaction lives in the server process that opened it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import structlog

from flight_lake.catalog import LEASE_SECONDS, DataObject, Mode, data_prefix, lease_key
from flight_lake.catalog import new_version_id as version_id
from flight_lake.errors import (
    Busy,
    Conflict,
    InvalidInput,
    LakeError,
    NotFound,
    TooLarge,
    Unavailable,
)
from flight_lake.layout import Layout
from flight_lake.settings import IngestSettings
from flight_lake.storage import Storage

log = structlog.get_logger()

BUSY_RETRY_SECONDS = 5
MAX_LABEL_CHARS = 255  # a file's label, as the client names it in errors
MAX_FILES = 10_000  # files staged in one transaction (its manifest lists their objects)


@dataclass(frozen=True)
class StagedFile:
    """One file of a transaction, parsed and written, not yet committed."""

    index: int
    label: str
    rows: int
    objects: list[DataObject]
    digest: str

    def to_json_dict(self) -> dict:
        return {"file": self.label, "index": self.index, "rows": self.rows,
                "objects": len(self.objects), "bytes": sum(o.size for o in self.objects)}


class FilePrefix:
    """Where one staged file's objects go (``renew`` starts over in a fresh sub-folder,
    as a CSV pass that changes its plan does)."""

    def __init__(self, storage: Storage, folder: str, index: int) -> None:
        self.storage, self.index, self._attempt = storage, index, 0
        self._base = f"{folder}/file-{index:05d}"
        self.prefix = self._base
        self.received = 0  # bytes of upload, for the log

    def renew(self) -> None:
        self.storage.delete_prefix(self.prefix)
        self._attempt += 1
        self.prefix = f"{self._base}.{self._attempt}"


@dataclass
class Transaction:
    """One open transaction; its state changes under ``_lock`` only."""

    id: str
    name: str
    mode: Mode
    storage: Storage
    folder: str
    discard: Callable[[str, str], None]  # (dataset, prefix): delete what was staged
    layout: Layout  # every file is written in it; the commit records it
    schema: pa.Schema | None = None  # fixed by the first file typed (or the dataset)
    files: dict[int, StagedFile] = field(default_factory=dict)
    failure: LakeError | None = None
    running: int = 0
    committing: bool = False
    labels: set[str] = field(default_factory=set)
    touched: float = field(default_factory=time.monotonic)
    _typing: bool = False  # a file is fixing the schema now
    _next_index: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def describe(self, staging_seconds: float) -> dict:
        return {"transaction": self.id, "name": self.name, "mode": self.mode,
                "partition_by": self.layout.partition_by, "sort_by": self.layout.sort_by,
                "idle_expiry_seconds": staging_seconds}

    def expected_schema(self) -> pa.Schema | None:
        """The schema this file must have, or ``None`` if it is the one that fixes it
        (its ``staged`` fixes it); waits while another file is fixing it."""
        with self._lock:
            while self._typing and self.schema is None and self.failure is None:
                self._lock.wait(1)
            self._check_alive()
            if self.schema is None:
                self._typing = True
            return self.schema

    @contextlib.contextmanager
    def staging(self, label: str,
                translate: Callable[[BaseException], LakeError]) -> Iterator[FilePrefix]:
        """One file's upload into this transaction: its prefix; its error (``translate``d
        into a ``LakeError``) names the file and fails the transaction."""
        with self._lock:
            self._check_alive()
            if label in self.labels:
                raise Conflict(f"file {label!r} is already staged in transaction {self.id}")
            if self._next_index >= MAX_FILES:
                raise TooLarge(f"transaction {self.id} already holds {MAX_FILES} files, the "
                               "most one version takes")
            self.labels.add(label)
            index, self._next_index = self._next_index, self._next_index + 1
            self.running += 1
            self.touched = time.monotonic()
        target = FilePrefix(self.storage, self.folder, index)
        try:
            yield target
        except BaseException as exc:
            error = _named(translate(exc), label)
            self.fail(error)
            if error is exc or not isinstance(exc, Exception):
                raise
            raise error from exc
        finally:
            with self._lock:
                self.running -= 1
                self.touched = time.monotonic()
                if self._typing and self.schema is None:
                    self._typing = False  # it never fixed the schema: let the next try
                self._lock.notify_all()

    def staged(self, label: str, prefix: FilePrefix, schema: pa.Schema,
               objects: list[DataObject], digest: str) -> StagedFile:
        staged = StagedFile(prefix.index, label, sum(o.row_count for o in objects), objects,
                            digest)
        with self._lock:
            self._check_alive()
            if self.schema is None:
                self.schema = schema
                self._typing = False
                self._lock.notify_all()
            self.files[prefix.index] = staged
        return staged

    def fail(self, error: LakeError) -> None:
        """Fail the transaction with its first error and delete every staged object."""
        with self._lock:
            if self.failure is None:
                self.failure = error
            self._typing = False
            self._lock.notify_all()
        self.discard(self.name, self.folder)

    def closing(self, expected_files: int | None) -> tuple[pa.Schema, list[DataObject], str]:
        """What the commit writes: the schema, every object in file order, and the digest
        of the whole content. Refused while a file is still uploading."""
        with self._lock:
            self._check_alive()
            if self.running:
                raise Conflict(f"transaction {self.id}: {self.running} file(s) are still "
                               "uploading; commit after they finish")
            if not self.files:
                raise InvalidInput(f"transaction {self.id} has no staged file to commit")
            if expected_files is not None and expected_files != len(self.files):
                raise InvalidInput(
                    f"transaction {self.id} holds {len(self.files)} staged file(s), the "
                    f"commit expects {expected_files}; nothing was committed")
            assert self.schema is not None
            self.committing = True
            ordered = [self.files[index] for index in sorted(self.files)]
        objects = [o for staged in ordered for o in staged.objects]
        return self.schema, objects, _combined_digest([s.digest for s in ordered])

    def _check_alive(self) -> None:
        if self.failure is not None:
            raise _again(self.failure, f"transaction {self.id} failed, nothing was "
                                       f"committed: {self.failure.detail}")
        if self.committing:
            raise Conflict(f"transaction {self.id} is being committed")


class Staging:
    """The open transactions of this server; a small thread keeps their leases and ends
    the idle ones (started by ``start``, stopped by ``close``)."""

    def __init__(self, storage: Storage, settings: IngestSettings,
                 discard: Callable[[str, str], None]) -> None:
        self.storage, self.settings, self._discard = storage, settings, discard
        self._open: dict[str, Transaction] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    @property
    def count(self) -> int:
        """How many transactions are open now (for /health)."""
        return len(self._open)

    def open(self, name: str, mode: Mode, layout: Layout,
             schema: pa.Schema | None) -> Transaction:
        with self._lock:
            if len(self._open) >= self.settings.max_open_transactions:
                raise Busy(f"{self.settings.max_open_transactions} transactions are open "
                           f"(ingest.max_open_transactions); retry in {BUSY_RETRY_SECONDS} s",
                           retry_after=BUSY_RETRY_SECONDS)
            transaction = Transaction(uuid.uuid4().hex, name, mode, self.storage,
                                      data_prefix(name, version_id()), self._discard,
                                      layout, schema=schema)
            self._open[transaction.id] = transaction
        self._lease(transaction)
        self._start_keeper()
        log.info("transaction_opened", transaction=transaction.id, dataset=name, mode=mode)
        return transaction

    def get(self, transaction_id: str) -> Transaction:
        with self._lock:
            transaction = self._open.get(transaction_id)
        if transaction is None:
            raise NotFound(f"unknown transaction {transaction_id!r} (it expired after "
                           f"ingest.staging_seconds idle, was committed or aborted, or "
                           "another server opened it)")
        with transaction._lock:
            transaction.touched = time.monotonic()
        return transaction

    def forget(self, transaction: Transaction) -> None:
        """Drop it from the open ones and remove its lease (its objects stay: committed)."""
        with self._lock:
            self._open.pop(transaction.id, None)
        with contextlib.suppress(LakeError):
            self.storage.delete(lease_key(transaction.folder))

    def abort(self, transaction: Transaction, reason: LakeError) -> None:
        transaction.fail(reason)
        self.forget(transaction)
        log.info("transaction_aborted", transaction=transaction.id, dataset=transaction.name,
                 reason=reason.detail)

    def close(self) -> None:
        """Stop the keeper and drop every open transaction not being committed."""
        self._stop.set()
        keeper = self._keeper
        if keeper is not None:
            keeper.join(timeout=5)
        with self._lock:
            transactions = list(self._open.values())
        for transaction in transactions:
            if not transaction.committing:
                self.abort(transaction, Unavailable("the server is shutting down"))

    def _start_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None:
                return  # running: it ends only once no transaction is open (under the lock)
            self._keeper = threading.Thread(target=self._keep, name="staging-keeper",
                                            daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        beat = min(LEASE_SECONDS / 3, max(self.settings.staging_seconds / 4, 0.05))
        last_lease = time.monotonic()
        while not self._stop.wait(beat):
            with self._lock:
                transactions = list(self._open.values())
                if not transactions:
                    self._keeper = None  # the next open starts another
                    return
            now = time.monotonic()
            for transaction in transactions:
                with transaction._lock:
                    idle = not transaction.running and not transaction.committing and \
                        now - transaction.touched > self.settings.staging_seconds
                if idle:
                    self.abort(transaction, LakeError("the transaction expired after "
                                                      "ingest.staging_seconds idle"))
            if now - last_lease >= LEASE_SECONDS / 3:
                last_lease = now
                for transaction in transactions:
                    self._lease(transaction)

    def _lease(self, transaction: Transaction) -> None:
        with contextlib.suppress(LakeError):
            self.storage.put(lease_key(transaction.folder), f"{time.time():.3f}".encode())


def check_label(label: str) -> str:
    if not label or len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise InvalidInput(f"a staged file needs a printable label of 1 to {MAX_LABEL_CHARS} "
                           "characters (the file's name)")
    return label


def _again(error: LakeError, detail: str) -> LakeError:
    """A new error of ``error``'s class and body with another detail."""
    again = type(error).__new__(type(error))
    again.__dict__.update(error.__dict__)
    again.args, again.detail, again.extra = (detail,), detail, dict(error.extra)
    return again


def _named(error: LakeError, label: str) -> LakeError:
    """The error of a staged file, its detail naming the file (``file`` in the body too)."""
    if "file" not in error.extra:  # else it is the transaction's failure, naming its file
        error.detail = f"file {label}: {error.detail}"
        error.args = (error.detail,)
        error.extra["file"] = label
    return error


def _combined_digest(digests: list[str]) -> str:
    """One file's digest as it is (the same content as a single upload); several files'
    digests, in order, digested together."""
    if len(digests) == 1:
        return digests[0]
    return "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()
