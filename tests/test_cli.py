"""The user-facing ``flight-lake`` subcommands against a live server, and their exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from flight_lake.cli import app, user
from flight_lake.cli.user import EXIT_CODES
from flight_lake.serve import Server
from flight_lake.settings import StorageSettings
from flight_lake_client import connect
from tests.support import PEOPLE_CSV, REPO, hold_ingest_slot, wait_until


@pytest.fixture(autouse=True)
def quiet_server_logs() -> Iterator[None]:
    """The in-process server logs to stdout, which CliRunner captures as the command's."""
    with capture_logs():
        yield


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """Flight only: nothing in this module speaks HTTP, whose stop costs ~0.2 s a server."""
    return serve(http={"enabled": False})


@pytest.fixture
def people_csv(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE_CSV)
    return path


def invoke(server: Server | str, *args: str, stdin: bytes | None = None) -> Result:
    """Run one command in-process, reaching the server through FLIGHT_LAKE_SERVER."""
    uri = server if isinstance(server, str) else server.flight_uri
    return CliRunner(env={"FLIGHT_LAKE_SERVER": uri}).invoke(app, list(args), input=stdin)


def assert_fails(result: Result, code: str) -> None:
    """Exit code of that error kind, and one line on stderr naming it (a SQL error may add
    DuckDB's hint and caret lines below it)."""
    assert result.exit_code == EXIT_CODES[code], (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith(f"flight-lake: {code}: "), result.stderr
    assert len(lines) == 1 or code == "invalid_input", result.stderr
    assert result.stdout == ""


# -- commands ------------------------------------------------------------------------


def test_ingest_prints_a_summary_or_the_manifest(server: Server, people_csv: Path) -> None:
    result = invoke(server, "ingest", str(people_csv), "--name", "people")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("people: 4 rows, version 1, 1 object(s), ")

    result = invoke(server, "ingest", str(people_csv), "--name", "people", "--mode", "append",
                    "--json")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert (manifest["name"], manifest["version"], manifest["row_count"]) == ("people", 2, 8)


def test_ingest_of_several_files_commits_one_version_or_nothing(
        server: Server, people_csv: Path, tmp_path: Path) -> None:
    more = tmp_path / "more.csv"
    more.write_bytes(PEOPLE_CSV)
    result = invoke(server, "ingest", str(people_csv), str(more), "--name", "twice",
                    "--streams", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("twice: 8 rows, version 1, 2 object(s), ")
    odd = tmp_path / "odd.csv"
    odd.write_text("other,columns\n1,2\n")
    failed = invoke(server, "ingest", str(people_csv), str(odd), "--name", "never")
    assert_fails(failed, "conflict")
    assert f"file {odd}: line 1: the header (other, columns) differs" in failed.stderr
    unnamed = invoke(server, "ingest", str(people_csv), str(more))  # several need --name
    assert unnamed.exit_code == user.EXIT_USAGE and "--name" in unnamed.stderr
    with connect(server.flight_uri) as lake:
        assert {m.name for m in lake.datasets()} >= {"twice"}
        assert "never" not in {m.name for m in lake.datasets()}


def test_ingest_reads_stdin_and_names_the_dataset_after_the_file(
        server: Server, tmp_path: Path) -> None:
    result = invoke(server, "ingest", "-", "--name", "piped", stdin=b"x,y\n1,2\n")
    assert result.exit_code == 0, result.stderr
    named = tmp_path / "Sales 2024.csv"
    named.write_bytes(b"x\n1\n")
    assert invoke(server, "ingest", str(named)).exit_code == 0
    with connect(server.flight_uri) as lake:
        assert [m.name for m in lake.datasets()] == ["piped", "sales_2024"]


def test_ingest_progress_callback_counts_bytes_and_rows(
        server: Server, people_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    seen: list[tuple[int, int]] = []

    @contextlib.contextmanager
    def recording(dataset: str, total: int | None) -> Iterator[object]:
        assert (dataset, total) == ("people", len(PEOPLE_CSV))
        yield lambda sent, lines: seen.append((sent, lines))

    monkeypatch.setattr(user, "_upload_progress", recording)
    assert invoke(server, "ingest", str(people_csv), "-n", "people").exit_code == 0
    assert seen[-1] == (len(PEOPLE_CSV), PEOPLE_CSV.count(b"\n"))


def test_sql_table_is_the_default(server: Server, people_csv: Path) -> None:
    invoke(server, "ingest", str(people_csv), "--name", "people")
    result = invoke(server, "sql", "SELECT id, name, score FROM people ORDER BY id")
    assert result.exit_code == 0, result.stderr
    assert "Barbara" in result.stdout and "91.25" in result.stdout
    assert "null" in result.stdout  # Linus has no score
    assert "4 row(s)" in result.stdout

    capped = invoke(server, "sql", "SELECT id FROM people", "--max-rows", "2")
    assert "2 of 4 rows" in capped.stdout


def test_sql_csv_json_and_parquet(server: Server, people_csv: Path, tmp_path: Path) -> None:
    invoke(server, "ingest", str(people_csv), "--name", "people")
    query = "SELECT id, name, born, active FROM people ORDER BY id"

    as_csv = invoke(server, "sql", query, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.stderr
    table = pacsv.read_csv(io.BytesIO(as_csv.stdout_bytes))
    assert table.column("name").to_pylist() == ["Ada", "Grace", "Linus", "Barbara"]

    as_json = invoke(server, "sql", query, "-f", "json")
    assert json.loads(as_json.stdout)[3] == {"id": 4, "name": "Barbara", "born": "1939-11-03",
                                             "active": None}

    out = tmp_path / "out.parquet"
    as_parquet = invoke(server, "sql", query, "-f", "parquet", "--output", str(out))
    assert (as_parquet.exit_code, as_parquet.stdout) == (0, "")
    assert pq.read_table(out).column("id").to_pylist() == [1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_sql_output_file_is_not_left_half_written(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    def write_then_fail(reader: object, sink: io.BytesIO) -> None:
        sink.write(b"[")
        raise OSError("disk full")

    monkeypatch.setattr(user, "_write_json", write_then_fail)
    folder = tmp_path / "results"
    folder.mkdir()
    result = invoke(server, "sql", "SELECT 1", "-f", "json", "-o", str(folder / "one.json"))
    assert result.exit_code == 1
    assert result.stderr == "flight-lake: disk full\n"
    assert list(folder.iterdir()) == []


def test_datasets_and_manifest(server: Server, people_csv: Path) -> None:
    empty = invoke(server, "datasets")
    assert empty.exit_code == 0 and "0 dataset(s)" in empty.stdout
    invoke(server, "ingest", str(people_csv), "--name", "people")

    listed = invoke(server, "datasets")
    assert "people" in listed.stdout and "1 dataset(s)" in listed.stdout
    as_json = json.loads(invoke(server, "datasets", "--format", "json").stdout)
    assert [m["name"] for m in as_json] == ["people"]

    manifest = invoke(server, "manifest", "people")
    assert manifest.exit_code == 0
    body = json.loads(manifest.stdout)
    assert body["row_count"] == 4 and body["schema"][0]["name"] == "id"


def test_health(server: Server) -> None:
    result = invoke(server, "health")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "ok"


# -- exit codes ----------------------------------------------------------------------


def test_each_error_kind_has_its_exit_code(server: Server, people_csv: Path) -> None:
    assert_fails(invoke(server, "manifest", "nobody"), "not_found")
    assert_fails(invoke(server, "sql", "SELECT * FROM nobody"), "not_found")

    broken = invoke(server, "ingest", "-", "--name", "broken", stdin=b"a,b\n1,2\n3\n")
    assert_fails(broken, "invalid_input")
    assert "line 3" in broken.stderr
    assert_fails(invoke(server, "ingest", str(people_csv), "--name", "Bad-Name"),
                 "invalid_input")

    invoke(server, "ingest", str(people_csv), "--name", "people")
    assert_fails(invoke(server, "ingest", "-", "--name", "people", stdin=b"other\n1\n"),
                 "conflict")
    assert_fails(invoke(server, "sql", "DELETE FROM people"), "permission_denied")
    assert_fails(invoke(server, "health", "--server", "grpc://127.0.0.1:9"), "unavailable")


def test_too_large_and_busy_exit_codes(serve: Callable[..., Server], people_csv: Path) -> None:
    server = serve(ingest={"max_upload_bytes": 100, "max_concurrent_ingests": 1})
    with connect(server.flight_uri) as lake:
        assert_fails(invoke(server, "ingest", str(people_csv), "--name", "people"), "too_large")
        held, thread, _ = hold_ingest_slot(lake, "slow")
        try:
            assert_fails(invoke(server, "ingest", "-", "--name", "small", stdin=b"a\n1\n"),
                         "busy")
        finally:
            held.release.set()
            thread.join(10)


def test_usage_errors_exit_2(server: Server, tmp_path: Path) -> None:
    missing = invoke(server, "ingest", str(tmp_path / "missing.csv"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    assert invoke(server, "sql", "SELECT 1", "--format", "xml").exit_code == 2
    assert invoke(server, "ingest", "-", "--mode", "upsert").exit_code == 2


def test_exit_codes_are_distinct() -> None:
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert not {0, 1, 2} & set(codes)


@pytest.mark.slow
def test_a_real_process_reports_one_line_and_the_exit_code(server: Server) -> None:
    """What a shell script sees: the process exit status and stderr."""
    env = {**os.environ, "FLIGHT_LAKE_SERVER": server.flight_uri,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")])}
    result = subprocess.run([sys.executable, "-m", "flight_lake", "manifest", "nobody"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == EXIT_CODES["not_found"]
    assert result.stderr == "flight-lake: not_found: unknown dataset: nobody\n"
    ok = subprocess.run([sys.executable, "-m", "flight_lake", "sql", "SELECT 42 AS answer",
                         "--format", "csv"], capture_output=True, text=True, env=env, timeout=60)
    assert (ok.returncode, ok.stdout) == (0, '"answer"\n42\n')


def test_ingest_and_sql_on_s3(
        serve: Callable[..., Server], s3_storage_settings: StorageSettings,
        people_csv: Path) -> None:
    """The CLI's S3 smoke test: the other CLI tests run on local storage only."""
    server = serve(storage=s3_storage_settings)
    result = invoke(server, "ingest", str(people_csv), "--name", "people")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("people: 4 rows, version 1, 1 object(s), ")
    counted = invoke(server, "sql", "SELECT count(*) AS n FROM people WHERE active",
                     "--format", "csv")
    assert (counted.exit_code, counted.stdout) == (0, '"n"\n2\n')
    assert json.loads(invoke(server, "health").stdout)["storage"]["backend"] == "s3"


# -- what an upload changed, Ctrl-C, caps, errors and help ----------------------------


def test_ingest_says_what_it_replaced_and_when_nothing_changed(
        server: Server, people_csv: Path, tmp_path: Path) -> None:
    assert invoke(server, "ingest", str(people_csv), "--name", "people").exit_code == 0
    again = invoke(server, "ingest", str(people_csv), "--name", "people")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith("people: unchanged: version 1 already holds this content "
                                   "(4 rows, ")
    assert again.stdout.rstrip().endswith("nothing was written")
    more = tmp_path / "more.csv"
    more.write_bytes(PEOPLE_CSV + b"5,Edsger,Rotterdam,,79.0,false\n")
    replaced = invoke(server, "ingest", str(more), "--name", "people")
    assert replaced.exit_code == 0, replaced.stderr
    assert replaced.stdout.startswith("people: 5 rows, version 2, 1 object(s), ")
    assert "; replaced version 1 (4 rows, " in replaced.stdout
    as_json = json.loads(invoke(server, "ingest", str(people_csv), "--name", "people",
                                "--json").stdout)
    assert as_json["replaced"]["version"] == 2 and as_json["unchanged"] is False


def test_ctrl_c_cancels_the_upload_at_once_and_commits_nothing(server: Server) -> None:
    """A real process and a real SIGINT while its upload is still streaming (stdin stays
    open, so only the interrupt can end it)."""
    env = {**os.environ, "FLIGHT_LAKE_SERVER": server.flight_uri,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "flight_lake", "ingest", "-", "--name", "big"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdin is not None
    with capture_logs() as logs, connect(server.flight_uri) as lake:
        rows = b"".join(b"%d,row %d\n" % (i, i) for i in range(200_000))  # > 2 chunks
        process.stdin.write(b"id,text\n" + rows)
        process.stdin.flush()
        wait_until(lambda: lake.health()["ingests_running"] == 1, 30, "the upload started")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)  # stdin stays open: only the interrupt ends it
        finally:
            process.kill()
        assert process.stderr is not None
        stderr = process.stderr.read()
        process.stdin.close()
        assert process.returncode == 130
        assert stderr.decode().strip() == (
            "flight-lake: ingest cancelled: nothing was committed (big is unchanged)")
        wait_until(lambda: lake.health()["ingests_running"] == 0, 30, "the server let go")
        assert lake.datasets() == []
    assert server.lake is not None
    assert not Path(server.lake.storage.root, "datasets", "big").exists()
    ends = [e for e in logs if e["event"] in ("ingest_cancelled", "ingest_failed")]
    assert [(e["event"], e["error"]) for e in ends] == [("ingest_cancelled", "cancelled")]


def test_a_file_over_the_cap_is_refused_before_the_first_byte(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(ingest={"max_upload_bytes": 1000})
    big = tmp_path / "big.csv"
    big.write_bytes(b"id\n" + b"1\n" * 1000)
    with capture_logs() as logs:
        result = invoke(server, "ingest", str(big))
    assert_fails(result, "too_large")
    assert "2,003 bytes, over the server's limit of 1,000 bytes" in result.stderr
    assert "nothing was sent" in result.stderr
    assert [e["method"] for e in logs if e["event"] == "flight_request"] == ["do_action"]


def test_sql_errors_keep_duckdbs_hint_and_caret(server: Server, people_csv: Path) -> None:
    invoke(server, "ingest", str(people_csv), "--name", "people")
    hinted = invoke(server, "sql", "SELECT nme FROM people")
    assert hinted.exit_code == EXIT_CODES["invalid_input"]
    lines = hinted.stderr.rstrip("\n").splitlines()
    assert lines[0].startswith("flight-lake: invalid_input: ") and "nme" in lines[0]
    assert lines[1] == 'Candidate bindings: "name"', hinted.stderr
    assert lines[-2:] == ["LINE 1: SELECT nme FROM people", " " * len("LINE 1: SELECT ") + "^"]

    query = "SELECT * FROM people WHERE id = 1 AND AND name"
    careted = invoke(server, "sql", query)
    assert careted.exit_code == EXIT_CODES["invalid_input"]
    lines = careted.stderr.rstrip("\n").splitlines()
    assert lines[0] == 'flight-lake: invalid_input: Parser Error: syntax error at or near "AND"'
    assert lines[-2] == f"LINE 1: {query}"
    assert lines[-1].index("^") == len("LINE 1: ") + query.index("AND AND") + 4


@pytest.mark.parametrize("command", [[], ["serve"], ["ingest"], ["sql"], ["datasets"],
                                     ["manifest"], ["health"], ["sample", "workers"]])
def test_help_shows_flags_without_a_value_placeholder(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output
    if command == ["serve"]:
        assert "--no-http" in result.output
    if command == ["ingest"]:
        assert "--json" in result.output and "--no-json" in result.output
