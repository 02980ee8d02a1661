"""docs/USER_GUIDE.md cannot rot: every example in it runs here against a live server.

Every ```bash and ```python block runs in document order, in one scratch folder, against a
server started on free ports. The guide shows the default addresses; they are replaced with
the live ones (``grpc://127.0.0.1:8815`` and ``http://127.0.0.1:3110``), and
``FLIGHT_LAKE_SERVER`` points the command line at the server. A block right after a
``<!-- no-test -->`` line is not run (it installs something or starts a server); ```toml
blocks are loaded as settings. After a ``<!-- secured server: PATH -->`` line, blocks run
against a second server over the same lake with the users of that secrets file (which an
earlier block wrote), shown in the guide as ``lake.example``.
``clients/examples/curl_examples.sh`` runs here too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flight_lake.cli.user import EXIT_CODES
from flight_lake.serve import Server
from flight_lake.settings import load_settings
from flight_lake_client import connect
from tests.support import REPO

GUIDE = REPO / "docs" / "USER_GUIDE.md"
CURL_EXAMPLES = REPO / "clients" / "examples" / "curl_examples.sh"
NO_TEST = "<!-- no-test -->"
DEFAULT_FLIGHT = "grpc://127.0.0.1:8815"
DEFAULT_HTTP = "http://127.0.0.1:3110"
SECURED = re.compile(r"^<!-- secured server: (\S+) -->$")
SECURED_FLIGHT = "grpc://lake.example:8815"
SECURED_HTTP = "http://lake.example:3110"
# Hang protection only. The guide's ~25 commands each start a Python process (about a second
# on an idle machine, many times that on a loaded one), one after the other: the bounds must
# hold the whole walk on a loaded machine, not just an idle one.
BLOCK_SECONDS = 600
GUIDE_SECONDS = 1800


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    runnable: bool
    secrets: str | None = None  # the secured server's secrets file, after its marker

    @property
    def uses_http(self) -> bool:
        return "curl " in self.code


def guide_blocks(path: Path = GUIDE) -> list[Block]:
    """The fenced code blocks of a Markdown file, each marked runnable or not."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    secrets = None
    while index < len(lines):
        marker = SECURED.match(lines[index])
        if marker is not None:
            secrets = marker.group(1)
        opening = re.match(r"^```(\w+)\s*$", lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = next((text.strip() for text in reversed(lines[:start]) if text.strip()), "")
        blocks.append(Block(opening.group(1), "\n".join(body) + "\n", start + 1,
                            previous != NO_TEST, secrets))
        index += 1
    return blocks


@pytest.fixture
def live_server(serve: Callable[..., Server]) -> Iterator[Server]:
    with capture_logs():
        yield serve()


def shell_env(server: Server, tmp_path: Path) -> dict[str, str]:
    """PATH with a ``flight-lake`` that is this checkout, and the live addresses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "flight-lake"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flight_lake "$@"\n')
    shim.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")]),
        "FLIGHT_LAKE_SERVER": server.flight_uri,
        "FLIGHT_LAKE_HTTP": server.http_uri or DEFAULT_HTTP,
    }


def localised(code: str, server: Server) -> str:
    for flight_uri, http_uri in ((DEFAULT_FLIGHT, DEFAULT_HTTP), (SECURED_FLIGHT, SECURED_HTTP)):
        code = code.replace(flight_uri, server.flight_uri)
        code = code.replace(http_uri, server.http_uri or DEFAULT_HTTP)
    return code


def test_the_guide_shows_every_way_in() -> None:
    blocks = guide_blocks()
    code = "".join(block.code for block in blocks)
    for needle in ("flight-lake ingest", "flight-lake sql", "curl ", "pyarrow.flight",
                   "from flight_lake_client import connect", "sql_pandas", "sql_polars",
                   "s3://", "adbc_ingest", "pl.read_database(", "pd.read_sql("):
        assert needle in code, needle
    skipped = [block.line for block in blocks if not block.runnable]
    assert len(skipped) <= 4, f"too many untested blocks at lines {skipped}"
    assert all(block.language in {"bash", "python", "toml"} for block in blocks)


@pytest.mark.slow
@pytest.mark.timeout(GUIDE_SECONDS)
def test_every_example_runs_against_a_live_server(
        live_server: Server, serve: Callable[..., Server], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "reader"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    env = shell_env(live_server, tmp_path)
    namespace: dict[str, object] = {"__name__": "__guide__"}
    ran = 0
    server = live_server
    for block in guide_blocks():
        if not block.runnable or block.language == "toml":
            continue
        if block.uses_http and live_server.http_uri is None:
            continue  # only while the HTTP adapter is not part of the package
        if block.secrets is not None and server is live_server:  # "Deploying it"
            users = tomllib.loads((workdir / block.secrets).read_text())["auth"]
            server = serve(auth=users)
            env = shell_env(server, tmp_path)
        code = localised(block.code, server)
        where = f"{GUIDE.name}:{block.line}"
        if block.language == "python":
            exec(compile(code, where, "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir,
                                    env=env, capture_output=True, text=True, timeout=BLOCK_SECONDS)
            assert result.returncode == 0, (
                f"{where} failed ({result.returncode}):\n{code}\nstdout:\n{result.stdout}\n"
                f"stderr:\n{result.stderr}")
            if "|| status=$?" in code:
                assert "exit code 4" in result.stdout, result.stdout
        ran += 1
    assert ran >= 15

    # What the guide did is really in the lake.
    with connect(live_server.flight_uri) as lake:
        names = {manifest.name: manifest.row_count for manifest in lake.datasets()}
    assert names["people"] == 5
    assert names["workers_by_state"] == 1_500  # partitioned, sorted, then appended to
    assert names["teams"] == 2  # ingested through ADBC (Flight SQL)
    assert (names["ranks"], names["visits"], names["cities"]) == (3, 3, 2)
    assert names["workers_ab"] == 500  # two files, one version
    assert lake_versions(live_server, "workers_ab") == [1]
    assert (workdir / "people.parquet").stat().st_size > 0
    assert (workdir / "people.json").read_text().startswith('[{"id":1,"name":"Ada"')  # as HTTP


def lake_versions(server: Server, name: str) -> list[int]:
    return server.lake.catalog.history(name)


def test_configuration_examples_are_valid_settings(tmp_path: Path) -> None:
    blocks = [block for block in guide_blocks() if block.language == "toml"]
    assert len(blocks) >= 3
    for number, block in enumerate(blocks):
        path = tmp_path / f"example-{number}.toml"
        path.write_text(block.code)
        if "secret_access_key" in block.code:
            settings = load_settings(config_file=None, secrets_file=path)
            assert settings.storage.secret_access_key is not None
        else:
            load_settings(config_file=path, secrets_file=None)
    s3 = load_settings(config_file=tmp_path / "example-0.toml", secrets_file=tmp_path /
                       "example-1.toml")
    assert s3.storage.uri.startswith("s3://") and s3.storage.access_key_id is not None


def test_the_exit_code_table_is_the_one_the_cli_uses() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    documented = {code: int(exit_code) for exit_code, code in
                  re.findall(r"^\| (\d+) \| `(\w+)` \|", text, flags=re.MULTILINE)}
    assert documented == {"internal": 1, **EXIT_CODES}


@pytest.mark.slow
def test_the_curl_examples_script_runs(live_server: Server, tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(CURL_EXAMPLES)], env=shell_env(live_server, tmp_path),
                            capture_output=True, text=True, timeout=BLOCK_SECONDS)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"row_count":8' in out.replace(" ", "")  # create, replace, then append 4 rows
    assert '"city":"Lyon","trips":4' in out.replace(" ", "")
    for status in ("HTTP 404", "HTTP 403", "HTTP 400"):
        assert status in out, out
