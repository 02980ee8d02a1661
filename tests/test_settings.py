"""Configuration: defaults, the committed TOML, env, secrets, overrides and bad values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flight_lake.errors import InvalidInput
from flight_lake.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = [
    "storage.uri", "storage.endpoint_url", "storage.region", "storage.access_key_id",
    "storage.secret_access_key", "flight.host", "flight.port", "http.host", "http.port",
    "ingest.max_upload_bytes", "ingest.max_concurrent_ingests", "query.timeout_seconds",
    "cache.max_bytes",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no conf/ here: the defaults alone
    for name in ("FLIGHT_LAKE_CONFIG", "FLIGHT_LAKE_SECRETS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.storage.uri == "./lake"
    assert (settings.flight.host, settings.flight.port) == ("127.0.0.1", 8815)
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 3110)
    assert settings.ingest.max_upload_bytes == 256 * 1024 * 1024
    assert settings.ingest.max_concurrent_ingests == 4
    assert settings.cache.max_bytes == 512 * 1024 * 1024


@pytest.mark.parametrize("old", ["[flight]\nobject_cache_bytes = 1\n",
                                 "[query]\ncache_max_bytes = 1\n"])
def test_the_two_old_cache_settings_are_gone(tmp_path: Path, old: str) -> None:
    config = tmp_path / "old.toml"
    config.write_text(old)
    with pytest.raises(InvalidInput, match="invalid setting"):  # one budget: [cache] max_bytes
        load_settings(config)


def test_committed_toml_lists_every_default() -> None:
    text = (REPO / "conf/flight_lake.toml").read_text()
    data = tomllib.loads(text)
    defaults = Settings().model_dump()
    for section, values in data.items():
        for key, value in values.items():
            assert defaults[section][key] == value, f"{section}.{key}"
    for dotted in REQUIRED_KEYS:
        section, key = dotted.split(".")
        assert key in defaults[section]
        assert key in text, f"{dotted} is not documented in conf/flight_lake.toml"
    assert load_settings(REPO / "conf/flight_lake.toml").model_dump() == defaults


def test_sources_in_priority_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "lake.toml"
    config.write_text('[flight]\nport = 9001\nhost = "0.0.0.0"\n[query]\ntimeout_seconds = 5\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[storage]\naccess_key_id = "AK"\nsecret_access_key = "SK"\n'
                       '[query]\ntimeout_seconds = 99\n')
    monkeypatch.setenv("FLIGHT_LAKE_FLIGHT__PORT", "9002")
    settings = load_settings(config, secrets, flight={"host": "127.0.0.2"})
    assert settings.flight.host == "127.0.0.2"  # explicit argument
    assert settings.flight.port == 9002  # environment beats the file
    assert settings.query.timeout_seconds == 5  # config file beats secrets
    assert settings.storage.access_key_id is not None
    assert settings.storage.access_key_id.get_secret_value() == "AK"
    assert "SK" not in repr(settings)  # secrets are not printed


def test_env_names_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[storage]\nuri = "s3://bucket/prefix"\n')
    monkeypatch.setenv("FLIGHT_LAKE_CONFIG", str(config))
    assert load_settings().storage.uri == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[flight]\nport = 70000\n", "flight.port"),
        ("[ingest]\nmax_upload_bytes = 0\n", "ingest.max_upload_bytes"),
        ("[ingest]\nmax_concurrent_ingests = 0\n", "ingest.max_concurrent_ingests"),
        ('[storage]\nuri = "ftp://x"\n', "storage.uri"),
        ('[storage]\nendpoint_url = "localhost:9000"\n', "storage.endpoint_url"),
        ("[query]\ntimeout_seconds = -1\n", "query.timeout_seconds"),
        ("[cache]\nmax_bytes = -1\n", "cache.max_bytes"),
        ("[flight]\nprot = 1\n", "flight.prot"),
    ],
)
def test_bad_setting_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(InvalidInput, match=rf"invalid setting {key}\b"):
        load_settings(config)


def test_bad_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHT_LAKE_INGEST__MAX_CONCURRENT_INGESTS", "many")
    with pytest.raises(InvalidInput, match=r"ingest\.max_concurrent_ingests"):
        load_settings()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_the_spark_engine_needs_its_remote() -> None:
    with pytest.raises(InvalidInput, match="spark_remote"):
        load_settings(config_file=None, secrets_file=None, query={"engine": "spark"})
    with pytest.raises(InvalidInput, match="spark_remote"):
        load_settings(config_file=None, secrets_file=None,
                      query={"engine": "spark", "spark_remote": "http://spark:15002"})
    settings = load_settings(config_file=None, secrets_file=None,
                             query={"engine": "spark", "spark_remote": "sc://spark:15002"})
    assert (settings.query.engine, settings.query.spark_remote) == ("spark", "sc://spark:15002")
    with pytest.raises(InvalidInput, match="engine"):
        load_settings(config_file=None, secrets_file=None, query={"engine": "trino"})
