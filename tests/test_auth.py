"""The auth package: hashes, tokens, roles, the login limit, the users file and the CLI,
and the safe default that refuses to serve open beyond loopback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flight_lake.auth import Authenticator, Role, register_operations, required_role
from flight_lake.auth.limiter import LoginLimiter
from flight_lake.auth.passwords import hash_api_key, hash_password, new_api_key, verify
from flight_lake.auth.tokens import TokenSigner
from flight_lake.cli import app
from flight_lake.errors import Busy, InvalidInput, PermissionDenied, Unauthenticated
from flight_lake.flight.server import ACTIONS
from flight_lake.serve import Server, is_loopback
from flight_lake.settings import AuthSettings, Settings, load_settings
from tests.support import PASSWORDS, auth_section, basic, make_settings


def test_password_hashes_are_salted_scrypt_and_checked() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$16384$8$1$") and first != second
    assert verify("correct horse", first) and verify("correct horse", second)
    assert not verify("correct hors", first)
    assert not verify("correct horse", "plain-text") and not verify("x", "scrypt$bad")


def test_api_keys_are_random_and_stored_as_a_digest() -> None:
    key = new_api_key()
    stored = hash_api_key(key)
    assert key.startswith("flk_") and key not in stored and verify(key, stored)
    assert not verify(new_api_key(), stored)
    with pytest.raises(ValueError):
        hash_api_key("short-password")


def test_tokens_verify_with_the_current_and_previous_keys() -> None:
    old = TokenSigner("old-key-" + "o" * 40, [], 600)
    token, expires_at = old.mint("ada", "writer")
    rotated = TokenSigner("new-key-" + "n" * 40, ["old-key-" + "o" * 40], 600)
    claims = rotated.verify(token)
    assert (claims.user, claims.role, claims.expires_at) == ("ada", "writer", expires_at)
    assert rotated.verify(rotated.mint("bob", "reader")[0]).user == "bob"
    with pytest.raises(Unauthenticated, match="unknown key"):
        TokenSigner("new-key-" + "n" * 40, [], 600).verify(token)


def test_roles_are_ordered_and_unknown_operations_need_admin() -> None:
    assert Role.READER < Role.WRITER < Role.ADMIN
    assert required_role("query") is Role.READER
    assert required_role("ingest") is Role.WRITER
    assert required_role("storage.read") is Role.ADMIN
    assert required_role("no.such.operation") is Role.ADMIN
    register_operations({"test.extra": "writer"})
    assert required_role("test.extra") is Role.WRITER
    with pytest.raises(ValueError, match="already needs writer"):
        register_operations({"test.extra": "reader"})
    assert {spec.operation for spec in ACTIONS.values()} <= {
        "catalog.read", "catalog.register", "health", "ingest"}  # ingest.begin/commit/abort


def test_the_limiter_locks_an_address_then_forgets_it() -> None:
    limiter = LoginLimiter(limit=2, window_seconds=60, max_addresses=2)
    limiter.failed("a")
    limiter.check("a")
    limiter.failed("a")
    with pytest.raises(Busy) as raised:
        limiter.check("a")
    assert 0 < raised.value.extra["retry_after"] <= 60
    limiter.check("b")
    limiter.failed("b")
    limiter.failed("c")  # the oldest window goes: memory stays bounded
    limiter.check("a")
    limiter.succeeded("b")
    limiter.check("b")


def test_a_lowered_role_or_a_removed_user_takes_effect_on_old_tokens() -> None:
    settings = AuthSettings.model_validate(auth_section())
    token, _ = Authenticator(settings).issue(
        Authenticator(settings).login("admin1", PASSWORDS["admin1"], address=None,
                                      operation="login"))
    lowered = auth_section()
    for user in lowered["users"]:
        if user["name"] == "admin1":
            user["role"] = "reader"
    identity = Authenticator(AuthSettings.model_validate(lowered)).identify(
        f"Bearer {token}", address=None, operation="query")
    assert identity.role is Role.READER
    removed = auth_section()
    removed["users"] = [u for u in removed["users"] if u["name"] != "admin1"]
    with pytest.raises(Unauthenticated):
        Authenticator(AuthSettings.model_validate(removed)).identify(
            f"Bearer {token}", address=None, operation="query")


def test_refusals_name_the_missing_role() -> None:
    authenticator = Authenticator(AuthSettings.model_validate(auth_section()))
    reader = authenticator.identify(basic("reader1", PASSWORDS["reader1"]), address="10.0.0.1",
                                    operation="login")
    with pytest.raises(PermissionDenied, match=r"catalog\.register needs the writer role"):
        authenticator.authorize(reader, "catalog.register", address="10.0.0.1")
    with pytest.raises(Unauthenticated, match="malformed Basic"):
        authenticator.identify("Basic !!!", address="10.0.0.1", operation="login")


# -- settings ----------------------------------------------------------------------


def test_users_and_keys_in_the_main_config_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "flight_lake.toml"
    config.write_text('[auth]\nsigning_key = "' + "k" * 40 + '"\n')
    with pytest.raises(InvalidInput, match=r"auth\.signing_key belongs in the secrets file"):
        load_settings(config_file=config)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nsigning_key = "' + "k" * 40 + '"\n')
    config.write_text("[auth]\ntoken_ttl_seconds = 600\n")
    loaded = load_settings(config_file=config, secrets_file=secrets)
    assert loaded.auth.token_ttl_seconds == 600 and loaded.auth.signing_key is not None


def test_a_plain_password_in_the_secrets_file_is_refused(local_settings: Settings,
                                                         tmp_path: Path) -> None:
    settings = make_settings(local_settings.storage, tmp_path, auth={"users": [
        {"name": "ada", "role": "admin", "password_hash": "hunter22hunter22"}]})
    with pytest.raises(InvalidInput, match="password_hash is not a hash"):
        Server(settings).start()


# -- the safe default --------------------------------------------------------------


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("lake.example")


def test_no_users_on_a_public_address_refuses_to_start(local_settings: Settings,
                                                       tmp_path: Path) -> None:
    settings = make_settings(local_settings.storage, tmp_path, http={"host": "0.0.0.0"})
    with pytest.raises(InvalidInput) as raised:
        Server(settings).start()
    assert "flight-lake users add NAME --role admin" in raised.value.detail
    assert "\n" not in raised.value.detail
    with Server(settings, insecure_no_auth=True) as running:
        assert running.http_port
    secured = make_settings(local_settings.storage, tmp_path, http={"host": "0.0.0.0"},
                            auth=auth_section())
    with Server(secured) as running:
        assert running.http_port


@pytest.mark.slow
def test_serve_refuses_in_one_line_from_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flight_lake", "serve", "--storage", str(tmp_path / "lake"),
         "--host", "0.0.0.0", "--flight-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 2  # like every start-up refusal
    lines = [line for line in result.stderr.splitlines() if line.startswith("flight-lake:")]
    assert len(lines) == 1 and "--insecure-no-auth" in lines[0]


# -- the users commands ------------------------------------------------------------


def test_users_add_prompts_twice_without_echo_and_writes_the_secrets_file(
        tmp_path: Path) -> None:
    secrets = tmp_path / "conf" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('# S3 keys stay\n[storage]\naccess_key_id = "AKIA"\n')
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "ada", "--role", "writer", "--secrets",
                                str(secrets)], input="Sup3r-secret\nSup3r-secret\n")
    assert added.exit_code == 0, added.output
    assert "Sup3r-secret" not in added.output
    assert added.output.count("Password") == 1 and "Repeat" in added.output
    mismatch = runner.invoke(app, ["users", "add", "bob", "--role", "reader", "--secrets",
                                   str(secrets)], input="one-password\nother-password\n"
                                                        "one-password\none-password\n")
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output
    text = secrets.read_text()
    parsed = tomllib.loads(text)
    assert "# S3 keys stay" in text and parsed["storage"]["access_key_id"] == "AKIA"
    assert [u["name"] for u in parsed["auth"]["users"]] == ["ada", "bob"]
    assert len(parsed["auth"]["signing_key"]) >= 32
    assert secrets.stat().st_mode & 0o077 == 0
    assert "Sup3r-secret" not in text
    settings = load_settings(secrets_file=secrets)
    authenticator = Authenticator(settings.auth)
    assert authenticator.login("ada", "Sup3r-secret", address=None,
                               operation="login").role is Role.WRITER


def test_users_add_from_stdin_list_and_remove(tmp_path: Path) -> None:
    """The commands a deploy script runs, through the CLI's own entry point (in-process:
    tests/test_cli.py runs a real process for the exit code and the one error line)."""
    secrets = tmp_path / "secrets.toml"
    runner = CliRunner()

    def users(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(app, ["users", *args, "--secrets", str(secrets)], input=stdin)

    added = users("add", "etl", "--role", "writer", "--password-stdin", stdin="from-stdin-pw\n")
    assert added.exit_code == 0, added.stderr
    service = users("add", "svc", "--role", "reader", "--api-key")
    key = service.stdout.strip()
    assert key.startswith("flk_") and key not in secrets.read_text()
    listed = users("list")
    assert listed.stdout.splitlines() == ["etl\twriter\tpassword", "svc\treader\tapi-key"]
    again = users("add", "etl", "--role", "admin", "--password-stdin", stdin="another-pw\n")
    assert again.exit_code == 5 and "exists" in again.stderr
    short = users("add", "x", "--role", "admin", "--password-stdin", stdin="short\n")
    assert short.exit_code == 3
    removed = users("remove", "etl")
    assert removed.exit_code == 0
    authenticator = Authenticator(load_settings(secrets_file=secrets).auth)
    assert authenticator.identify(f"Bearer {key}", address=None,
                                  operation="query").user == "svc"
    with pytest.raises(Unauthenticated):
        authenticator.login("etl", "from-stdin-pw", address=None, operation="login")
