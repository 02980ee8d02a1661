"""Spark engine: read-only SQL run by a Spark Connect server over the datasets' Iceberg tables.

With ``query.engine = "spark"`` every SQL read (Flight, Flight SQL, HTTP) is answered by the
Spark Connect server at ``query.spark_remote`` instead of the in-process DuckDB; the answer
comes back as Arrow batches and leaves through the same front ends unchanged. Spark sees
every dataset as a table through Iceberg's ``hadoop`` catalog over the storage's
``_iceberg`` warehouse (namespace ``lake``, table = dataset name; the layout is in
docs/SCALE_OUT.md). flight_lake configures that catalog in its own Spark session, so the
cluster needs only the Iceberg runtime (and, for S3, hadoop-aws) on its class path.

Read-only holds as on DuckDB: the statement is first admitted by
:mod:`flight_lake.sql_guard` (one SELECT over datasets, from DuckDB's parse), then refused
here if the two dialects could read it differently (a backslash or ``$`` in the text) or it
calls a function DuckDB does not know (Spark's ``reflect``, ``java_method``…): only then
does it leave the process. Each read carries an operation tag; its deadline (the watchdog of
:mod:`flight_lake.watchdog`) and ``Lake.cancel`` interrupt that tag on the server.

Locks: ``_lock`` guards the session and the schema cache, taken alone; nothing remote is
called under it except creating the session once.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import structlog

from flight_lake.catalog import Catalog
from flight_lake.errors import (
    InvalidInput,
    LakeError,
    NotFound,
    PermissionDenied,
    StorageError,
    Unavailable,
)
from flight_lake.result import Batches
from flight_lake.settings import Settings
from flight_lake.sql_guard import Statement
from flight_lake.storage import Storage
from flight_lake.watchdog import Deadline, Watchdog

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession

log = structlog.get_logger()

SPARK_CATALOG = "flight_lake"  # the catalog's name inside flight_lake's Spark session
NAMESPACE = "lake"  # every dataset's table: <warehouse>/lake/<name>
WAREHOUSE = "_iceberg"  # under the storage root
_SCHEMAS_KEPT = 1024
# Characters the two dialects read differently: backslash escapes in Spark's string
# literals (not in DuckDB's), DuckDB's $$-quoted strings and $n parameters (not in Spark's).
_AMBIGUOUS = ("\\", "$")


class SparkEngine:
    """Runs admitted statements on a Spark Connect server; thread-safe, one shared session.

    ``start()`` starts its watchdog (the session is opened on the first read, and again
    after the server was lost); ``close()`` stops both.
    """

    def __init__(self, storage: Storage, catalog: Catalog, settings: Settings) -> None:
        assert settings.query.spark_remote is not None  # the settings require it
        self.remote = settings.query.spark_remote
        self.catalog = catalog
        self.conf = session_conf(storage)
        self._batch_rows = settings.query.batch_rows
        self._spark: SparkSession | None = None
        self._schemas: OrderedDict[tuple[bytes, tuple[tuple[str, int], ...]], pa.Schema] = \
            OrderedDict()
        self._lock = threading.Lock()
        self._watchdog = Watchdog()
        self._closed = False

    def start(self) -> SparkEngine:
        self._watchdog.start()
        log.info("spark_engine_ready", remote=self.remote)
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spark, self._spark = self._spark, None
        self._watchdog.stop()
        if spark is not None:
            try:
                spark.stop()  # releases the session on the server
            except Exception as exc:
                log.warning("spark_session_stop_failed", error=str(exc))

    def schema(self, statement: Statement) -> pa.Schema:
        """The Arrow schema Spark answers ``statement`` with, cached by digest and the
        versions of the datasets it reads."""
        self.admit(statement)
        key = (statement.digest, self._versions(statement))
        with self._lock:
            known = self._schemas.get(key)
            if known is not None:
                self._schemas.move_to_end(key)
                return known
        deadline = Deadline.after(30.0)
        spark, tag = self._tagged(deadline)
        try:
            schema = _arrow_schema(spark.sql(statement.text))
        except Exception as exc:
            raise self._translate(exc, deadline) from exc
        finally:
            spark.removeTag(tag)
            deadline.finish()
        with self._lock:
            self._schemas[key] = schema
            while len(self._schemas) > _SCHEMAS_KEPT:
                self._schemas.popitem(last=False)
        return schema

    def stream(self, statement: Statement, deadline: Deadline) -> tuple[pa.Schema, Batches]:
        """Start ``statement`` on Spark: its schema and a generator of its batches.

        The batches raise ``LakeError``s; ``QueryTimeout``/``Cancelled`` once ``deadline``
        has fired (the operation is interrupted on the server too).
        """
        self.admit(statement)
        spark, tag = self._tagged(deadline)
        try:
            deadline.check()
            frame: Any = spark.sql(statement.text)  # its plan is sent as it is
            schema = _arrow_schema(frame)
            client = spark.client
            pieces = client.to_table_as_iterator(frame._plan.to_proto(client),
                                                 frame._plan.observations)
            first = _next_table(pieces)  # sends the plan, under this thread's tag
        except BaseException as exc:
            deadline.finish()
            spark.removeTag(tag)
            if isinstance(exc, Exception):
                raise self._translate(exc, deadline) from exc
            raise
        spark.removeTag(tag)
        return schema, self._batches(spark, tag, schema, first, pieces, deadline)

    def admit(self, statement: Statement) -> None:
        """Refuse what the guard admitted for DuckDB but Spark could read otherwise."""
        for character in _AMBIGUOUS:
            if character in statement.text:
                raise InvalidInput(
                    f"the Spark engine refuses {character!r} in SQL: Spark and DuckDB read it "
                    "differently (write strings without escapes, no $ parameters)")
        if statement.unknown_functions:
            name = sorted(statement.unknown_functions)[0]
            raise PermissionDenied(
                f"function {name}() is not allowed: on the Spark engine SQL may call the "
                "pure functions both engines know")

    # -- internals -------------------------------------------------------------------

    def _versions(self, statement: Statement) -> tuple[tuple[str, int], ...]:
        versions = []
        for table in sorted(statement.tables):
            try:
                versions.append((table, self.catalog.get(table).version))
            except NotFound:
                versions.append((table, 0))
        return tuple(versions)

    def _tagged(self, deadline: Deadline) -> tuple[SparkSession, str]:
        """The session, with a fresh operation tag set on this thread and watched."""
        spark = self._session()
        tag = f"flight-lake-{uuid.uuid4().hex}"
        spark.addTag(tag)
        self._watchdog.watch(deadline, _Interrupt(spark, tag))
        return spark, tag

    def _session(self) -> SparkSession:
        with self._lock:
            if self._closed:
                raise Unavailable("the Spark engine is closed")
            if self._spark is not None:
                return self._spark
            try:
                self._spark = open_session(self.remote, self.conf)
            except Exception as exc:
                raise Unavailable(f"cannot reach the Spark Connect server at {self.remote} "
                                  f"(query.spark_remote): {_first_line(exc)}") from exc
            return self._spark

    def _batches(self, spark: SparkSession, tag: str, schema: pa.Schema, first: pa.Table | None,
                 pieces: Iterator[Any], deadline: Deadline) -> Batches:
        ended = False
        try:
            table = first
            while table is not None:
                deadline.check()
                yield from table.cast(schema).to_batches(max_chunksize=self._batch_rows)
                table = _next_table(pieces)
            ended = True
        except LakeError:
            raise
        except Exception as exc:
            raise self._translate(exc, deadline) from exc
        finally:
            deadline.finish()
            if not ended:  # closed early, failed or timed out: stop it on the server
                _Interrupt(spark, tag).interrupt()
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    def _translate(self, exc: BaseException, deadline: Deadline | None) -> LakeError:
        if isinstance(exc, LakeError):
            return exc
        if deadline is not None and deadline.fired:
            return deadline.error()
        from pyspark import errors

        detail = _first_line(exc)
        if isinstance(exc, errors.AnalysisException | errors.ParseException
                      | errors.IllegalArgumentException | errors.ArithmeticException
                      | errors.NumberFormatException | errors.DateTimeException
                      | errors.ArrayIndexOutOfBoundsException
                      | errors.UnsupportedOperationException):
            return InvalidInput(f"Spark: {detail}")
        if "UNAVAILABLE" in detail or "INVALID_HANDLE" in detail or \
                "SESSION_NOT_FOUND" in detail or "SESSION_CLOSED" in detail:
            with self._lock:
                self._spark = None  # the server went away or forgot us: reconnect next time
            return Unavailable(f"the Spark Connect server at {self.remote} is unavailable: "
                               f"{detail}")
        log.warning("spark_query_failed", error=detail)
        return StorageError(f"Spark could not run the query: {detail}")


class _Interrupt:
    """Stops one tagged operation on the server; called by the watchdog (again every few
    milliseconds until the read ends: an interrupt sent before the operation started
    stops nothing) and on close."""

    def __init__(self, spark: SparkSession, tag: str) -> None:
        self.spark = spark
        self.tag = tag

    def interrupt(self) -> None:
        try:
            self.spark.interruptTag(self.tag)
        except Exception as exc:  # the server is gone: nothing is left to stop
            log.info("spark_interrupt_failed", error=_first_line(exc))


def session_conf(storage: Storage) -> dict[str, str]:
    """The Spark session settings that show every dataset as ``<name>`` (Iceberg, read by
    the catalog ``flight_lake``, namespace ``lake``), from the lake's storage settings."""
    prefix = f"spark.sql.catalog.{SPARK_CATALOG}"
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "hadoop",
        f"{prefix}.warehouse": warehouse_url(storage),
        f"{prefix}.default-namespace": NAMESPACE,
        f"{prefix}.cache-enabled": "false",  # each query sees the latest commit
        "spark.sql.defaultCatalog": SPARK_CATALOG,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.ansi.doubleQuotedIdentifiers": "true",  # "x" is a name, as in DuckDB
    }
    settings = getattr(storage, "settings", None)
    if storage.backend == "s3" and settings is not None:
        hadoop = f"{prefix}.hadoop.fs.s3a"
        conf[f"{prefix}.hadoop.fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
        conf[f"{hadoop}.endpoint.region"] = settings.region
        if settings.endpoint_url:
            endpoint = urlsplit(settings.endpoint_url)
            conf[f"{hadoop}.endpoint"] = settings.endpoint_url
            conf[f"{hadoop}.path.style.access"] = "true"
            conf[f"{hadoop}.connection.ssl.enabled"] = str(endpoint.scheme == "https").lower()
        if settings.access_key_id is not None and settings.secret_access_key is not None:
            conf[f"{hadoop}.access.key"] = settings.access_key_id.get_secret_value()
            conf[f"{hadoop}.secret.key"] = settings.secret_access_key.get_secret_value()
    return conf


def warehouse_url(storage: Storage) -> str:
    """The Iceberg warehouse as Hadoop names it: ``file:/…`` or ``s3a://bucket/prefix/…``."""
    if storage.backend == "s3":
        return f"s3a://{storage.root}/{WAREHOUSE}"
    return f"file://{storage.root}/{WAREHOUSE}"


def open_session(remote: str, conf: dict[str, str]) -> SparkSession:
    """A new Spark Connect session at ``remote`` with ``conf`` set."""
    try:
        from pyspark.sql.connect.session import SparkSession
    except ImportError as exc:
        raise Unavailable("the Spark engine needs pyspark: pip install 'flight-lake[spark]'"
                          ) from exc
    spark = SparkSession.builder.remote(remote).create()
    for key, value in conf.items():
        spark.conf.set(key, value)
    return spark


def _arrow_schema(frame: Any) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    schema: pa.Schema = to_arrow_schema(frame.schema, timestamp_utc=True)
    return schema


def _next_table(pieces: Iterator[Any]) -> pa.Table | None:
    """The next Arrow piece of a Spark Connect result (its schema messages skipped)."""
    for piece in pieces:
        if isinstance(piece, pa.Table):
            return piece
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
