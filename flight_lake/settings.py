"""Configuration: one pydantic-settings object, built once in ``main`` and passed down.

Sources, first wins: explicit arguments (CLI flags), environment variables
(``FLIGHT_LAKE_<SECTION>__<KEY>``), the TOML config file (``conf/flight_lake.toml`` or
``--config``), then a secrets TOML file (S3 keys; never committed). With nothing at all
the server runs on ``./lake``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flight_lake.errors import InvalidInput

DEFAULT_CONFIG_FILE = Path("conf/flight_lake.toml")
DEFAULT_SECRETS_FILE = Path("conf/secrets.toml")
MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    uri: str = "./lake"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not uri.strip():
            raise ValueError("must not be empty")
        if "://" in uri and not uri.startswith(("file://", "s3://")):
            raise ValueError("must be a local path, file://… or s3://bucket[/prefix]")
        if uri.startswith("s3://") and not uri[len("s3://") :].strip("/"):
            raise ValueError("s3:// needs a bucket name")
        return uri

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


class FlightSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8815, ge=0, le=65535)
    object_cache_bytes: int = Field(default=1024 * MiB, ge=0)


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=3110, ge=0, le=65535)


class IngestSettings(_Section):
    max_upload_bytes: int = Field(default=256 * MiB, gt=0)
    max_concurrent_ingests: int = Field(default=4, ge=1)
    sample_bytes: int = Field(default=1 * MiB, ge=4096)
    rows_per_part: int = Field(default=1_000_000, ge=1)
    row_group_rows: int = Field(default=131_072, ge=1)
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    spool_dir: str | None = None
    gc_grace_seconds: int = Field(default=3600, ge=0)


class QuerySettings(_Section):
    timeout_seconds: float = Field(default=30.0, gt=0)
    batch_rows: int = Field(default=65_536, ge=1)
    threads: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None
    cache_max_bytes: int = Field(default=128 * MiB, ge=0)


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
    log: LogSettings = LogSettings()

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
    bound = type(
        "BoundSettings",
        (Settings,),
        {"config_file": config_path, "secrets_file": secrets_path},
    )
    try:
        return bound(**overrides)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from exc
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


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        problems.append(f"invalid setting {key}: {error['msg']}")
    return "; ".join(problems)
