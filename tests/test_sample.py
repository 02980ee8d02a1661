"""The fixture generator: deterministic, streamed, and a CSV that parses to the rows asked for."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks import generate


def _read(path: Path) -> pa.Table:
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={"zip": pa.string()}),
    )


def test_same_seed_gives_byte_identical_file(tmp_path: Path) -> None:
    first = generate.write_csv(tmp_path / "a.csv", rows=1234)
    second = generate.write_csv(tmp_path / "b.csv", rows=1234)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert first.sha256 == second.sha256
    assert first.sha256 == hashlib.sha256((tmp_path / "a.csv").read_bytes()).hexdigest()
    assert first.bytes == (tmp_path / "a.csv").stat().st_size


def test_other_seed_gives_other_rows(tmp_path: Path) -> None:
    first = generate.write_csv(tmp_path / "a.csv", rows=500, seed=1)
    second = generate.write_csv(tmp_path / "b.csv", rows=500, seed=2)
    assert first.sha256 != second.sha256


def test_shorter_file_is_a_prefix_of_a_longer_one(tmp_path: Path) -> None:
    generate.write_csv(tmp_path / "short.csv", rows=777)
    generate.write_csv(tmp_path / "long.csv", rows=generate.BLOCK_ROWS + 10)
    short = (tmp_path / "short.csv").read_bytes()
    assert (tmp_path / "long.csv").read_bytes().startswith(short)


def test_parses_to_the_rows_asked_for_with_every_column(tmp_path: Path) -> None:
    rows = generate.BLOCK_ROWS + 4321  # crosses a block boundary and cuts mid-block
    result = generate.write_csv(tmp_path / "w.csv", rows=rows)
    table = _read(result.path)
    assert result.rows == rows
    assert table.num_rows == rows
    assert table.column_names == list(generate.COLUMNS)
    assert table["id"].to_pylist() == list(range(1, rows + 1))
    assert table["hire_date"].type == pa.date32()
    assert table["active"].type == pa.bool_()
    assert table["hourly_rate"].type == pa.float64()
    assert table["years_experience"].type == pa.int64()
    assert 0 < table["score"].null_count < rows * 0.2


def test_text_columns_have_the_awkward_cases(tmp_path: Path) -> None:
    path = generate.write_csv(tmp_path / "w.csv", rows=20_000).path
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 20_000
    notes = [record["notes"] for record in records]
    assert any("," in note for note in notes)
    assert any('"' in note for note in notes)
    assert any("\n" in note for note in notes)
    assert any(note == "" for note in notes)
    zips = [record["zip"] for record in records]
    assert all(len(zip_code) == 5 and zip_code.isdigit() for zip_code in zips)
    assert sum(zip_code.startswith("0") for zip_code in zips) > 100
    states = {record["state"] for record in records}
    assert "IL" in states and len(states) == 51
    assert all(len(state) == 2 and state.isupper() for state in states)
    assert {record["active"] for record in records} == {"true", "false"}


def test_target_bytes_writes_whole_blocks_up_to_the_size(tmp_path: Path) -> None:
    target = 8_000_000
    result = generate.write_csv(tmp_path / "big.csv", rows=None, target_bytes=target)
    assert result.bytes >= target
    assert result.rows % generate.BLOCK_ROWS == 0
    assert _read(result.path).num_rows == result.rows


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert generate.main(["--rows", "100", "--out", str(out)]) == 0
    assert _read(out).num_rows == 100
    assert not list(tmp_path.glob("*.partial-*"))
