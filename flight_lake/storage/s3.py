"""An S3 bucket (or any S3-compatible service) and prefix as storage, through s3fs.

DuckDB reads the same objects through its ``httpfs`` extension, loaded by path from the
``duckdb-extension-httpfs`` wheel and given the storage's credentials as a secret
(docs/adr/0002-duckdb-reads-s3.md). s3fs is imported only when an S3 root is opened, so
local-only servers never pay for botocore.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from flight_lake.errors import StorageError
from flight_lake.storage.base import ObjectInfo, Storage, one_line
from flight_lake.storage.multipart import MultipartWriter

if TYPE_CHECKING:
    import duckdb
    import fsspec
    from aiobotocore.session import AioSession

    from flight_lake.settings import StorageSettings

# The start-up check and the health probe must answer in seconds, not after botocore's
# retries, when the endpoint does not answer at all.
_PROBE_CONFIG = {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}


@functools.cache
def _session() -> AioSession:
    """The process's one aiobotocore session, from which every S3 client is made.

    A new session parses botocore's S3 service model again (about half a second); one shared
    session parses it once. It holds no credentials of ours (each client is given its
    storage's keys) and is used only on fsspec's single I/O thread, where s3fs makes clients.
    """
    from aiobotocore.session import get_session

    return get_session()


class S3Storage(Storage, schemes=("s3",)):
    """Objects under ``s3://bucket/prefix``; manifests commit with ``If-None-Match: *``."""

    backend = "s3"
    list_page_keys = 1000  # keys per LIST request (S3's own maximum)

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, settings: StorageSettings,
                 probe_fs: fsspec.AbstractFileSystem) -> None:
        super().__init__(fs, root, settings.probe_seconds)
        self.bucket = root.split("/", 1)[0]
        self.settings = settings
        self._probe_fs = probe_fs

    @classmethod
    def check_uri(cls, uri: str) -> None:
        if not uri[len("s3://") :].strip("/"):
            raise ValueError("s3:// needs a bucket name")

    @classmethod
    def open(cls, settings: StorageSettings) -> S3Storage:
        import s3fs

        bucket, _, prefix = settings.uri[len("s3://") :].strip("/").partition("/")
        options: dict[str, Any] = {
            "key": _secret(settings.access_key_id),
            "secret": _secret(settings.secret_access_key),
            "endpoint_url": settings.endpoint_url,
            "client_kwargs": {"region_name": settings.region},
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "session": _session(),
        }
        fs = s3fs.S3FileSystem(**options)
        probe_fs = s3fs.S3FileSystem(**options, config_kwargs=_PROBE_CONFIG)
        probe_fs.retries = 1  # s3fs's own retry loop, on top of botocore's
        root = f"{bucket}/{prefix}" if prefix else bucket
        return cls(fs, root, settings, probe_fs)

    # -- start-up and health ---------------------------------------------------------------

    def prepare(self, *, create: bool = False) -> None:
        where = self.settings.endpoint_url or f"AWS S3 ({self.settings.region})"
        try:
            self._head_bucket()
        except FileNotFoundError as exc:
            if not create:
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {where}: create it "
                    f"(aws s3 mb s3://{self.bucket}{self._endpoint_flag()}) or start with "
                    "--create-bucket (storage.create_bucket = true)"
                ) from exc
            self._create_bucket(where)
        except PermissionError as exc:
            raise StorageError(
                f"access to bucket {self.bucket!r} at {where} is denied: check the "
                "credentials (storage.access_key_id and storage.secret_access_key)"
            ) from exc
        except Exception as exc:
            raise StorageError(
                f"cannot reach bucket {self.bucket!r} at {where}: {one_line(exc)}; check "
                "storage.endpoint_url and that the service is running"
            ) from exc
        super().prepare(create=create)

    def _probe(self) -> None:
        self._head_bucket()

    def _head_bucket(self) -> None:
        self._probe_fs.call_s3("head_bucket", Bucket=self.bucket)

    def _create_bucket(self, where: str) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.settings.region != "us-east-1":  # the one region that takes no constraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        try:
            self._probe_fs.call_s3("create_bucket", **params)
        except Exception as exc:
            raise StorageError(
                f"cannot create bucket {self.bucket!r} at {where}: {one_line(exc)}"
            ) from exc

    def _endpoint_flag(self) -> str:
        endpoint = self.settings.endpoint_url
        return f" --endpoint-url {endpoint}" if endpoint else ""

    # -- reads: one request each (s3fs's generic calls add a HEAD, or a LIST, to most) --------

    def get(self, key: str) -> bytes:
        with self._translate(key):  # one GET: no HEAD first to split a small object
            return bytes(self.fs.cat_file(self.path(key), max_concurrency=1))

    def exists(self, key: str) -> bool:
        """One HEAD: whether an object is at ``key`` (a "folder" is not an object)."""
        bucket, _, name = self.path(key).partition("/")
        with self._translate(key):
            try:
                self.fs.call_s3("head_object", Bucket=bucket, Key=name)
            except FileNotFoundError:
                return False
        return True

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object under ``prefix``, sorted by key: one LIST per thousand objects."""
        skip = len(self.root) + 1
        return sorted(
            (ObjectInfo(key=f"{self.bucket}/{item['Key']}"[skip:], size=int(item["Size"]))
             for page in self._listing(prefix, delimiter="")
             for item in page.get("Contents", ()) if not item["Key"].endswith("/")),
            key=lambda found: found.key)

    def list_children(self, prefix: str) -> builtins.list[str]:
        """Names directly under ``prefix`` (one level), sorted: one LIST (per thousand)."""
        names: set[str] = set()
        for page in self._listing(prefix, delimiter="/"):
            entries = [*(p["Prefix"] for p in page.get("CommonPrefixes", ())),
                       *(item["Key"] for item in page.get("Contents", ()))]
            names.update(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        names.discard("")
        return sorted(names)

    def _listing(self, prefix: str, delimiter: str) -> Iterator[dict[str, Any]]:
        """The pages of ``ListObjectsV2`` under ``prefix`` (a missing prefix: one empty page)."""
        bucket, _, folder = self.path(prefix, prefix=True).partition("/")
        query: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{folder}/" if folder else "",
                                 "Delimiter": delimiter, "MaxKeys": self.list_page_keys}
        with self._translate(prefix):
            while True:
                page = self.fs.call_s3("list_objects_v2", **query)
                yield page
                if not page.get("IsTruncated"):
                    return
                query["ContinuationToken"] = page["NextContinuationToken"]

    # -- writes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A streaming writer for ``key``: a multipart upload of
        ``storage.multipart_part_bytes`` parts, ``storage.multipart_uploads`` of them on
        their way at once (``MultipartWriter``); nothing stays in the store on failure."""
        bucket, _, name = self.path(key).partition("/")
        with self._translate(key):
            writer = MultipartWriter(self.fs.call_s3, bucket, name,
                                     self.settings.multipart_part_bytes,
                                     self.settings.multipart_uploads)
            try:
                yield cast(IO[bytes], writer)
            except BaseException:
                writer.abort()
                raise
            writer.close()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``): the store refuses a second create."""
        path = self.path(key)
        with self._translate(key):
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True

    # -- DuckDB ----------------------------------------------------------------------------

    def configure_duckdb(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Load httpfs from its PyPI wheel by path and give it this storage's S3 secret."""
        connection.load_extension(_httpfs_path())
        settings = self.settings
        options = {"REGION": settings.region}
        key_id = _secret(settings.access_key_id)
        if key_id is not None:
            options["KEY_ID"] = key_id
        secret = _secret(settings.secret_access_key)
        if secret is not None:
            options["SECRET"] = secret
        parts = ["TYPE s3", *(f"{key} {_quoted(value)}" for key, value in options.items())]
        if settings.endpoint_url:
            endpoint = urlsplit(settings.endpoint_url)
            parts += [
                f"ENDPOINT {_quoted(endpoint.netloc)}",
                "URL_STYLE 'path'",
                f"USE_SSL {'true' if endpoint.scheme == 'https' else 'false'}",
            ]
        connection.execute(f"CREATE SECRET lake_storage ({', '.join(parts)})")
        connection.execute("SET enable_http_metadata_cache = true")  # objects are immutable
        if key_id is not None:  # else AWS_* variables are the credentials
            # GLOBAL: a plain SET is per connection; each query runs on a new cursor
            connection.execute("SET GLOBAL enable_global_s3_configuration = false")


def _httpfs_path() -> str:
    """The httpfs build matching this DuckDB, shipped by the ``duckdb-extension-httpfs`` wheel."""
    import duckdb

    hint = (f"install duckdb-extension-httpfs=={duckdb.__version__} to read S3 "
            "(see docs/adr/0002-duckdb-reads-s3.md)")
    try:
        import duckdb_extension_httpfs
    except ImportError as exc:
        raise StorageError(f"the httpfs extension is missing: {hint}") from exc
    path = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions",
                        f"v{duckdb.__version__}", "httpfs.duckdb_extension")
    if not os.path.isfile(path):
        raise StorageError(f"no httpfs build for DuckDB {duckdb.__version__}: {hint}")
    return path


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _quoted(value: str) -> str:
    """A SQL string literal (the secret's options take no parameters)."""
    return "'" + value.replace("'", "''") + "'"
