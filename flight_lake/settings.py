"""Configuration: one pydantic-settings object, built once in ``main`` and passed down.

Sources, first wins: explicit arguments (CLI flags), environment variables
(``FLIGHT_LAKE_<SECTION>__<KEY>``), the TOML config file (``conf/flight_lake.toml`` or
``--config``), then a secrets TOML file (S3 keys, users and the token signing key;
never committed). With nothing at all
the server runs on ``./lake``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flight_lake.errors import InvalidInput, summarise

DEFAULT_CONFIG_FILE = Path("conf/flight_lake.toml")
DEFAULT_SECRETS_FILE = Path("conf/secrets.toml")
MiB = 1024 * 1024
SNAPSHOTS_KEPT = 100  # iceberg.snapshots_kept


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    uri: str = "./lake"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    create_bucket: bool = False
    probe_seconds: float = Field(default=5.0, ge=0)
    multipart_part_bytes: int = Field(default=8 * MiB, ge=5 * MiB)  # S3's smallest part
    multipart_uploads: int = Field(default=4, ge=1)  # parts of one object sent at once

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        from flight_lake.storage import backend_for  # the backends say which URIs they serve

        if not uri.strip():
            raise ValueError("must not be empty")
        backend_for(uri)
        return uri

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


FLIGHT_URI = r"^grpc(\+tls)?://[^/\s]+:\d+$"


class FlightSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8815, ge=0, le=65535)
    max_command_bytes: int = Field(default=1 * MiB, ge=1024)
    # How clients and peers reach this server (unset: grpc[+tls]://host:port as bound).
    advertise_uri: str | None = Field(default=None, pattern=FLIGHT_URI)


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=3110, ge=0, le=65535)
    max_json_body_bytes: int = Field(default=1 * MiB, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=8)


class IngestSettings(_Section):
    max_upload_bytes: int = Field(default=256 * MiB, gt=0)
    max_concurrent_ingests: int = Field(default=4, ge=1)
    max_concurrent_ingests_per_client: int | None = Field(default=None, ge=1)  # None: all
    sample_bytes: int = Field(default=1 * MiB, ge=4096)
    rows_per_part: int = Field(default=1_000_000, ge=1)
    max_partitions: int = Field(default=1024, ge=1)  # distinct partition_by values per upload
    row_group_rows: int = Field(default=131_072, ge=1)
    row_group_bytes: int = Field(default=64 * MiB, ge=1)
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    spool_dir: str | None = None
    gc_grace_seconds: int = Field(default=3600, ge=0)
    upload_idle_seconds: float = Field(default=30.0, gt=0)
    upload_min_bytes_per_second: int = Field(default=1024, ge=0)
    upload_rate_window_seconds: float = Field(default=20.0, gt=0)
    staging_seconds: float = Field(default=300.0, gt=0)  # a transaction's idle lifetime
    max_open_transactions: int = Field(default=16, ge=1)


class QuerySettings(_Section):
    timeout_seconds: float = Field(default=30.0, gt=0)
    batch_rows: int = Field(default=65_536, ge=1)
    threads: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None
    max_sql_bytes: int = Field(default=256 * 1024, ge=1024)
    max_open_results: int = Field(default=64, ge=1)
    # "spark": SQL runs on the Spark Connect server at spark_remote (docs/SCALE_OUT.md)
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_remote: str | None = None

    @model_validator(mode="after")
    def _spark_needs_remote(self) -> QuerySettings:
        if self.engine == "spark" and not (self.spark_remote or "").startswith("sc://"):
            raise ValueError('query.engine = "spark" needs query.spark_remote, '
                             'e.g. "sc://spark-host:15002"')
        return self


class CatalogSettings(_Section):
    # How often another replica's commits are looked for (0: never; restart to see them).
    refresh_seconds: float = Field(default=2.0, ge=0)


class ClusterSettings(_Section):
    # The other replicas' flight.advertise_uri: GetFlightInfo on a dataset spreads its
    # endpoints over this server and them.
    peers: list[str] = Field(default_factory=list)

    @field_validator("peers")
    @classmethod
    def _flight_uris(cls, peers: list[str]) -> list[str]:
        for peer in peers:
            if not re.match(FLIGHT_URI, peer):
                raise ValueError(f"{peer!r} is not grpc://host:port or grpc+tls://host:port")
        return list(dict.fromkeys(peers))


class IcebergSettings(_Section):
    # Mirror each commit into the dataset's Iceberg table (docs/ICEBERG.md).
    enabled: bool = True
    # Snapshots the table's current metadata lists, the newest; an older version stays
    # readable from its own v<N>.metadata.json.
    snapshots_kept: int = Field(default=SNAPSHOTS_KEPT, ge=2)


class CacheSettings(_Section):
    max_bytes: int = Field(default=512 * MiB, ge=0)


class UserEntry(_Section):
    """One ``[[auth.users]]`` entry of the secrets file (``flight-lake users add`` writes it)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["reader", "writer", "admin"]
    password_hash: SecretStr


class AuthSettings(_Section):
    # Kept in the main TOML: how long a token lasts and how many failed logins an address
    # may make before it is refused as busy for ``login_lockout_seconds``.
    token_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    login_failure_limit: int = Field(default=10, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    # Secrets-file only (load_settings refuses them in the main TOML).
    signing_key: SecretStr | None = None
    previous_signing_keys: list[SecretStr] = Field(default_factory=list)
    users: list[UserEntry] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique_names(cls, users: list[UserEntry]) -> list[UserEntry]:
        names = [user.name for user in users]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"user listed twice: {', '.join(duplicates)}")
        return users

    @field_validator("signing_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (flight-lake users add makes one)")
        return key


class TlsSettings(_Section):
    # PEM files; with cert and key Flight serves grpc+tls:// and HTTP serves https://.
    cert: Path | None = None
    key: Path | None = None
    # With a CA, clients must present a certificate it signed (mutual TLS).
    client_ca: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    @model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("tls.client_ca needs tls.cert and tls.key")
        for path in (self.cert, self.key, self.client_ca):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """Every setting of the server; see ``conf/flight_lake.toml`` for each with its default."""

    model_config = SettingsConfigDict(
        env_prefix="FLIGHT_LAKE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    storage: StorageSettings = StorageSettings()
    flight: FlightSettings = FlightSettings()
    http: HttpSettings = HttpSettings()
    ingest: IngestSettings = IngestSettings()
    query: QuerySettings = QuerySettings()
    cache: CacheSettings = CacheSettings()
    catalog: CatalogSettings = CatalogSettings()
    cluster: ClusterSettings = ClusterSettings()
    iceberg: IcebergSettings = IcebergSettings()
    log: LogSettings = LogSettings()
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()

    # Set per load by ``load_settings``; class attributes so the source hook can see them.
    config_file: ClassVar[Path | None] = None
    secrets_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        for path in (cls.config_file, cls.secrets_file):
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(
    config_file: str | Path | None = None,
    secrets_file: str | Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from every source; raise ``InvalidInput`` naming the bad key.

    ``overrides`` are nested dicts by section (``{"flight": {"port": 0}}``), as the CLI
    passes its flags. A config or secrets file named explicitly must exist; the default
    ones are used only when present.
    """
    config_path = _pick_file(config_file, "FLIGHT_LAKE_CONFIG", DEFAULT_CONFIG_FILE)
    secrets_path = _pick_file(secrets_file, "FLIGHT_LAKE_SECRETS", DEFAULT_SECRETS_FILE)
    if config_path is not None:
        _no_secrets_in(config_path)
    bound = type(
        "BoundSettings",
        (Settings,),
        {"config_file": config_path, "secrets_file": secrets_path},
    )
    try:
        return bound(**overrides)
    except ValidationError as exc:
        raise InvalidInput(summarise(exc, "invalid setting ")) from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise InvalidInput(f"cannot read configuration: {exc}") from exc


def _pick_file(explicit: str | Path | None, env_var: str, default: Path) -> Path | None:
    named = explicit if explicit is not None else os.environ.get(env_var)
    if named:
        path = Path(named)
        if not path.is_file():
            raise InvalidInput(f"configuration file not found: {path}")
        return path
    return default if default.is_file() else None


SECRET_AUTH_KEYS = ("users", "signing_key", "previous_signing_keys")


def _no_secrets_in(config_path: Path) -> None:
    """Users and signing keys belong in the secrets file, never in the main TOML."""
    try:
        auth = tomllib.loads(config_path.read_text(encoding="utf-8")).get("auth", {})
    except (OSError, ValueError):
        return  # the TOML source reports it, naming the file
    misplaced = [key for key in SECRET_AUTH_KEYS if isinstance(auth, dict) and key in auth]
    if misplaced:
        raise InvalidInput(
            f"auth.{misplaced[0]} belongs in the secrets file, not in {config_path} "
            "(flight-lake users add writes it there)")
