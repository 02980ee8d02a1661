"""The sample data generator: deterministic, streamed, a CSV that parses to the rows asked for,
and the same bytes as the NumPy generator it replaced (it re-implements NumPy's random stream)."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from benchmarks import generate as bench_generate
from flight_lake import sample_data as generate
from tests.support import REPO


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


def test_benchmarks_command_writes_the_same_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert bench_generate.main(["--rows", "100", "--out", str(out)]) == 0
    assert out.read_bytes() == b"".join(generate.iter_csv(100))
    assert not list(tmp_path.glob("*.partial-*"))


# The NumPy generator this module replaced wrote these files (sha256 of the whole file).
NUMPY_GENERATOR_DIGESTS = {
    (1234, generate.DEFAULT_SEED):
        "3a531d7ec2c3db9dca2c384161440bc805c98d05e83f2d99658010eef7a86b22",
    (60_000, 7): "4b377dbf155ce92e22b66a95bc0ca2c674205d8dfebf77385ccf45abf647a470",
}


@pytest.mark.parametrize(("rows", "seed"), sorted(NUMPY_GENERATOR_DIGESTS))
def test_same_bytes_as_the_numpy_generator(rows: int, seed: int) -> None:
    made = hashlib.sha256(b"".join(generate.iter_csv(rows, seed=seed))).hexdigest()
    assert made == NUMPY_GENERATOR_DIGESTS[rows, seed]


@pytest.mark.parametrize("entropy", [[generate.DEFAULT_SEED, 0], [1, 2], [2**40 + 5, 3], [0]])
def test_random_stream_is_numpys_default_rng(entropy: list[int]) -> None:
    numpy_rng, ours = np.random.default_rng(entropy), generate.Random(entropy)
    cdf = generate._cdf(generate.STATE_WEIGHTS)
    weights = np.asarray(generate.STATE_WEIGHTS, dtype=np.float64)
    for _ in range(3):  # interleaved, odd counts: the spare 32-bit half carries over
        assert ours.integers(0, 37, 1001) == numpy_rng.integers(0, 37, 1001).tolist()
        assert ours.random(5) == numpy_rng.random(5).tolist()
        assert ours.integer(100, 9999) == int(numpy_rng.integers(100, 9999))
        big = ours.integers(5, 2**31 + 7, 2001)  # a wide range: rejections happen
        assert big == numpy_rng.integers(5, 2**31 + 7, 2001).tolist()
        chosen = numpy_rng.choice(len(weights), 999, p=weights / weights.sum()).tolist()
        assert ours.choice(cdf, 999) == chosen


@pytest.mark.slow
def test_sample_command_works_without_numpy(tmp_path: Path) -> None:
    """`flight-lake sample workers` after a plain `pip install .`, where NumPy is absent."""
    out = tmp_path / "data" / "workers.csv"
    blocker = tmp_path / "no_numpy"
    blocker.mkdir()
    (blocker / "numpy.py").write_text("raise ImportError('numpy is not installed')\n")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO), str(REPO / "clients")])}
    result = subprocess.run(
        [sys.executable, "-m", "flight_lake", "sample", "workers", "--rows", "250",
         "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "250 rows" in result.stdout
    assert out.read_bytes() == b"".join(generate.iter_csv(250))
    assert _read(out).num_rows == 250
