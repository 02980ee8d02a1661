"""Shared fixtures: real storage on both backends (a tmp folder and moto's S3 server).

``storage_settings`` is parametrised over ``local`` and ``s3``; any test that takes it (or
``storage``) runs against both. The S3 endpoint is moto's real HTTP server on a free
loopback port, started once per session and emptied before each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import fsspec
import httpx
import pytest
from moto.server import ThreadedMotoServer

from flight_lake.settings import Settings, StorageSettings, load_settings
from flight_lake.storage import Storage

S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_bucket(endpoint: str) -> str:
    """Empty moto, clear fsspec's instance cache, and create a fresh bucket."""
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
    fsspec.AbstractFileSystem.clear_instance_cache()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    ).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    if request.param == "local":
        return StorageSettings(uri=str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = make_bucket(endpoint)
    return StorageSettings(
        uri=f"s3://{bucket}/prefix",
        endpoint_url=endpoint,
        region=S3_REGION,
        access_key_id=S3_KEY,
        secret_access_key=S3_SECRET,
    )


@pytest.fixture
def local_storage_settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(uri=str(tmp_path / "lake"))


@pytest.fixture
def storage(storage_settings: StorageSettings) -> Storage:
    return Storage.from_settings(storage_settings)


@pytest.fixture
def settings(storage_settings: StorageSettings, tmp_path: Path) -> Settings:
    """Full settings on both backends, with every server on a free port."""
    return make_settings(storage_settings, tmp_path)


@pytest.fixture
def local_settings(local_storage_settings: StorageSettings, tmp_path: Path) -> Settings:
    """Full settings on local storage only, for tests where the backend is beside the point."""
    return make_settings(local_storage_settings, tmp_path)


def make_settings(storage_settings: StorageSettings, tmp_path: Path, **sections: dict) -> Settings:
    overrides: dict = {
        "storage": storage_settings.model_dump(),
        "flight": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "ingest": {"spool_dir": str(tmp_path)},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    for secret in ("access_key_id", "secret_access_key"):
        value = overrides["storage"].get(secret)
        if value is not None and hasattr(value, "get_secret_value"):
            overrides["storage"][secret] = value.get_secret_value()
    return load_settings(config_file=None, secrets_file=None, **overrides)
