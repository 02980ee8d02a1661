"""Ingest on both backends: CSV as people write it, the inference policy and its late
fallback, errors naming the line, limits, failures that leave nothing behind, Arrow uploads."""

from __future__ import annotations

import gzip
import hashlib
import random
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake import ingest as ingest_module
from flight_lake.catalog import Catalog, Manifest, ReplacedVersion
from flight_lake.errors import (
    Busy,
    Cancelled,
    Conflict,
    InvalidInput,
    LakeError,
    NotFound,
    TooLarge,
)
from flight_lake.ingest import IngestService
from flight_lake.settings import Settings
from flight_lake.storage import Storage
from tests.support import make_settings, wait_until


class LakePieces:
    """The three pieces ingest needs, built directly from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage.from_settings(settings.storage)
        self.catalog = Catalog(self.storage)
        self.ingest = IngestService(self.storage, self.catalog, settings)

    def table(self, manifest: Manifest) -> pa.Table:
        """Every part of ``manifest`` read back from storage, in order."""
        tables = []
        for data_object in manifest.objects:
            with self.storage.open_read(data_object.key) as handle:
                part = pq.read_table(handle)
            assert part.num_rows == data_object.row_count
            assert data_object.size == self.storage.size(data_object.key)
            tables.append(part)
        return pa.concat_tables(tables)

    def keys(self) -> list[str]:
        return [info.key for info in self.storage.list("datasets")]


def chunked(data: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def with_settings(base: Settings, tmp_path: Path, **sections: dict) -> Settings:
    return make_settings(base.storage, tmp_path, **sections)


def spool_leftovers(settings: Settings) -> list[Path]:
    return list(Path(str(settings.ingest.spool_dir)).glob("flight-lake-upload-*"))


@pytest.fixture
def lake(settings: Settings) -> LakePieces:
    return LakePieces(settings)


@pytest.fixture(scope="module")
def refusing(shared_settings: Settings) -> LakePieces:
    """One empty lake per backend for the refusal cases: each must leave it empty."""
    return LakePieces(shared_settings)


# -- CSV as people write it ---------------------------------------------------------------

def test_real_world_csv_round_trips(lake: LakePieces) -> None:
    data = (b'\xef\xbb\xbfid,"name, full",note,zip,score\r\n'
            b'1,"Smith, Jane","said ""hi""\r\nthen left",00501,1.5\r\n'
            b'2,Bob,,02134,\r\n'
            b'3,"",plain,90210,-2\r\n')
    manifest = lake.ingest.ingest_csv("people", "create", chunked(data))
    assert manifest.row_count == 3
    assert [(c.name, c.type) for c in manifest.columns] == [
        ("id", "int64"), ("name, full", "string"), ("note", "string"), ("zip", "string"),
        ("score", "double")]
    [data_object] = manifest.objects
    assert data_object.key.startswith("datasets/people/") and data_object.key.endswith(
        "/part-0.parquet")
    assert lake.table(manifest).to_pylist() == [
        {"id": 1, "name, full": "Smith, Jane", "note": 'said "hi"\r\nthen left', "zip": "00501",
         "score": 1.5},
        {"id": 2, "name, full": "Bob", "note": None, "zip": "02134", "score": None},
        {"id": 3, "name, full": "", "note": "plain", "zip": "90210", "score": -2.0},
    ]
    assert lake.keys() == [data_object.key]
    assert spool_leftovers(lake.settings) == []


def test_header_only_file_gives_an_empty_dataset_of_strings(lake: LakePieces) -> None:
    manifest = lake.ingest.ingest_csv("empty_one", "create", [b"a,b,c"])  # no final newline
    assert manifest.row_count == 0
    assert [(c.name, c.type) for c in manifest.columns] == [("a", "string"), ("b", "string"),
                                                            ("c", "string")]
    assert len(manifest.objects) == 1
    table = lake.table(manifest)
    assert table.num_rows == 0 and table.schema.names == ["a", "b", "c"]


def test_chunks_may_be_any_bytes_like_object(lake: LakePieces) -> None:
    chunks: list[Any] = [bytearray(b"a,b\n1,"), memoryview(b"x\n2,"), pa.py_buffer(b"y\n"), b""]
    manifest = lake.ingest.ingest_csv("bytes_like", "create", chunks)
    assert lake.table(manifest).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(InvalidInput, match="must be bytes"):
        lake.ingest.ingest_csv("text", "create", iter(["a,b\n"]))  # type: ignore[arg-type]
    assert lake.keys() == [o.key for o in manifest.objects]


def test_empty_header_names_are_numbered(lake: LakePieces) -> None:
    manifest = lake.ingest.ingest_csv("unnamed", "create", [b",value,\n0,a,x\n1,b,y\n"])
    assert [c.name for c in manifest.columns] == ["column_1", "value", "column_3"]
    assert lake.table(manifest).column("column_1").to_pylist() == [0, 1]


def test_rows_longer_than_the_sample_and_the_block_are_read_whole(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 64 * 1024)
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"sample_bytes": 4096}))
    long_in_sample, long_later = "y" * 20_000, 'quoted, "long"\n' * 20_000
    quoted_later = '"' + long_later.replace('"', '""') + '"'
    lines = ["n,text", f"0,{long_in_sample}", *(f"{i},x" for i in range(1, 5000)),
             f"5000,{quoted_later}"]
    manifest = lake.ingest.ingest_csv("long_rows", "create", ["\n".join(lines).encode()])
    text = lake.table(manifest).column("text").to_pylist()
    assert manifest.row_count == 5001
    assert text[0] == long_in_sample and text[-1] == long_later and text[1] == "x"


# -- the inference policy -----------------------------------------------------------------

def test_ambiguous_columns_become_strings_and_are_logged(lake: LakePieces) -> None:
    data = (b"zip,empty,big,mixed,code,na,count\n"
            b"00501,,12345678901234567890,1,+5,1,7\n"
            b"60614,,1,x,0x10,NA,0\n")
    with capture_logs() as logs:
        manifest = lake.ingest.ingest_csv("policy", "create", [data])
    types = {c.name: c.type for c in manifest.columns}
    assert types == {"zip": "string", "empty": "string", "big": "string", "mixed": "string",
                     "code": "string", "na": "string", "count": "int64"}
    reasons = {e["column"]: e["reason"] for e in logs
               if e["event"] == "column_defaulted_to_string"}
    assert reasons == {"zip": "leading zeros", "empty": "no values in the sample",
                       "big": "integers too large for int64", "mixed": "mixed numbers and text",
                       "code": "mixed numbers and text", "na": "mixed numbers and text"}
    assert all(e["dataset"] == "policy" for e in logs if e["event"] == "column_defaulted_to_string")
    assert lake.table(manifest).to_pylist()[0] == {
        "zip": "00501", "empty": None, "big": "12345678901234567890", "mixed": "1",
        "code": "+5", "na": "1", "count": 7}


def late_value_csv(rows: int, bad_row: int, column: str, bad_value: str) -> bytes:
    """``id,amount,zip,day``: clean typed values, one ``bad_value`` at ``bad_row`` in ``column``."""
    lines = ["id,amount,zip,day"]
    rng = random.Random(7)
    for row in range(rows):
        values = {"id": str(row), "amount": f"{rng.randint(0, 9999) / 100:.2f}",
                  "zip": str(rng.randint(10000, 99999)), "day": f"2024-01-{row % 28 + 1:02d}"}
        if row == bad_row:
            values[column] = bad_value
        lines.append(",".join(values.values()))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(("column", "bad_value", "reason"), [
    ("zip", "00501", "leading zeros after the sample"),  # caught by our integer check
    ("id", "n/a", "values that are not plain integers after the sample"),
    ("id", "99999999999999999999", "integers too large for int64 after the sample"),
    ("amount", "N/A", "invalid value 'N/A' after the sample"),  # Arrow's conversion error
    ("day", "2024-02-30", "invalid value '2024-02-30' after the sample"),
])
def test_a_value_far_past_the_sample_falls_back_without_losing_rows(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    column: str, bad_value: str, reason: str,
) -> None:
    # Small blocks and parts, so several parts exist before the bad value is met.
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 16 * 1024)
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"sample_bytes": 4096,
                                                          "rows_per_part": 2_000,
                                                          "row_group_rows": 800}))
    rows, bad_row = 8_000, 7_400
    data = late_value_csv(rows, bad_row, column, bad_value)
    assert data.index(bad_value.encode()) > 20 * 4096
    with capture_logs() as logs:
        manifest = lake.ingest.ingest_csv("late", "create", chunked(data, 16_384))
    defaulted = [e for e in logs if e["event"] == "column_defaulted_to_string"]
    assert [(e["column"], e["reason"]) for e in defaulted] == [(column, reason)]
    types = {c.name: c.type for c in manifest.columns}
    assert types[column] == "string"
    assert manifest.row_count == rows and len(manifest.objects) == 4
    table = lake.table(manifest)
    original = [line.split(",") for line in data.decode().splitlines()[1:]]
    index = ["id", "amount", "zip", "day"].index(column)
    assert table.column(column).to_pylist() == [fields[index] for fields in original]
    assert table.column(column)[bad_row].as_py() == bad_value
    # Only the final attempt's parts are left in storage.
    assert lake.keys() == sorted(o.key for o in manifest.objects)


def test_invalid_utf8_in_a_number_column_past_the_sample_names_its_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 64 * 1024)
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"sample_bytes": 4096}))
    data = late_value_csv(20_000, 15_000, "amount", "x").replace(b",x,", b",\xff,")
    with pytest.raises(InvalidInput) as caught:
        lake.ingest.ingest_csv("bad_bytes", "create", [data])
    assert caught.value.line == 15_002  # header + 15,000 rows before it
    assert "line 15002" in caught.value.detail and "UTF-8" in caught.value.detail
    assert lake.keys() == [] and lake.catalog.list() == []


# -- errors name the line and leave nothing behind ----------------------------------------

@pytest.mark.parametrize(("data", "line", "words"), [
    (b"", 1, "empty CSV"),
    (b"\n\n", 1, "empty CSV"),
    (b"a,b\n1,2\n3\n4,5\n", 3, "expected 2 fields, found 1"),
    (b'a,b\n1,"two\nlines"\n2,3,4\n', 4, "expected 2 fields, found 3"),
    (b"a,b\r\n1,2\r\n\r\n3,4,5\r\n", 4, "expected 2 fields, found 3"),
    (b"a,b\n1,caf\xe9\n", 2, "UTF-8"),
    (b"a\xff,b\n1,2\n", 1, "UTF-8"),
    (b"id,Name,name\n1,2,3\n", 1, "duplicate column name"),
])
def test_bad_csv_is_invalid_input_naming_the_line(
    refusing: LakePieces, data: bytes, line: int, words: str
) -> None:
    lake = refusing
    with pytest.raises(InvalidInput) as caught:
        lake.ingest.ingest_csv("bad", "create", chunked(data, 3))
    assert caught.value.line == line
    assert f"line {line}" in caught.value.detail and words in caught.value.detail
    assert caught.value.to_dict()["line"] == line
    assert lake.keys() == [] and lake.catalog.list() == []
    assert spool_leftovers(lake.settings) == []


def test_wrong_field_count_in_a_late_block_names_the_physical_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 64 * 1024)
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"sample_bytes": 4096,
                                                          "rows_per_part": 5_000}))
    good = lake.ingest.ingest_csv("kept", "create", [b"a,b\n1,x\n"])
    lines = ["n,text"] + [f'{i},"two\nlines"' for i in range(10_000)] + ["10000,a,b"]
    with pytest.raises(InvalidInput) as caught:
        lake.ingest.ingest_csv("kept", "replace", ["\n".join(lines).encode()])
    assert caught.value.line == 1 + 2 * 10_000 + 1
    assert [o.key for o in lake.catalog.get("kept").objects] == [good.objects[0].key]
    assert lake.keys() == [good.objects[0].key]
    assert lake.table(lake.catalog.get("kept")).to_pylist() == [{"a": 1, "b": "x"}]


def test_name_and_mode_are_checked_before_reading_any_data(lake: LakePieces) -> None:
    lake.ingest.ingest_csv("exists", "create", [b"a\n1\n"])

    def untouched() -> Iterator[bytes]:
        raise AssertionError("the stream was read")
        yield b""

    with pytest.raises(NotFound):
        lake.ingest.ingest_csv("missing", "append", untouched())
    with pytest.raises(InvalidInput, match="invalid dataset name"):
        lake.ingest.ingest_csv("Bad-Name", "create", untouched())
    with pytest.raises(InvalidInput, match="invalid mode"):
        lake.ingest.ingest_csv("exists", "upsert", untouched())  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        lake.ingest.ingest_arrow("missing", "append", pa.schema([("a", pa.int64())]), untouched())
    with pytest.raises(Conflict):  # another schema under create: refused before writing
        lake.ingest.ingest_csv("exists", "create", [b"a,b\n1,2\n"])
    assert [c.name for c in lake.catalog.get("exists").columns] == ["a"]
    assert len(lake.keys()) == 1


# -- limits -------------------------------------------------------------------------------

def test_too_large_is_refused_while_streaming(settings: Settings, tmp_path: Path) -> None:
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"max_upload_bytes": 1000}))
    pulled = []

    def endless() -> Iterator[bytes]:
        yield b"a,b\n"
        while True:
            pulled.append(1)
            yield b"1,2\n" * 25  # 100 bytes

    with pytest.raises(TooLarge):
        lake.ingest.ingest_csv("huge", "create", endless())
    assert len(pulled) == 10  # 4 + 10 * 100 bytes passes 1000: no chunk more was read
    assert lake.keys() == [] and lake.catalog.list() == [] and lake.ingest.active == 0


def test_busy_when_every_slot_is_taken(settings: Settings, tmp_path: Path) -> None:
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"max_concurrent_ingests": 2}))
    release = threading.Event()
    results: list[Any] = []

    def held(name: str) -> None:
        def chunks() -> Iterator[bytes]:
            yield b"a,b\n1,2\n"
            assert release.wait(30)
            yield b"3,4\n"
        try:
            results.append(lake.ingest.ingest_csv(name, "create", chunks()))
        except LakeError as exc:  # pragma: no cover - reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=held, args=(f"slow_{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: lake.ingest.active == 2, 10, "both uploads holding a slot")

    def untouched() -> Iterator[bytes]:
        raise AssertionError("a refused upload was read")
        yield b""

    with pytest.raises(Busy) as caught:
        lake.ingest.ingest_csv("third", "create", untouched())
    assert caught.value.to_dict()["error"] == "busy"
    with pytest.raises(Busy):
        lake.ingest.ingest_arrow("third", "create", pa.schema([("a", pa.int64())]), [])
    release.set()
    for thread in threads:
        thread.join(30)
    assert sorted(m.name for m in results) == ["slow_0", "slow_1"]
    assert all(m.row_count == 2 for m in results) and lake.ingest.active == 0
    lake.ingest.ingest_csv("third", "create", [b"a\n1\n"])  # the slots are free again


# -- failures leave nothing behind --------------------------------------------------------

def test_a_dropped_client_leaves_storage_and_catalog_unchanged(settings: Settings) -> None:
    lake = LakePieces(settings)
    kept = lake.ingest.ingest_csv("kept", "create", [b"a,b\n1,x\n"])
    before = (lake.keys(), lake.catalog.list())
    body = b"".join(f"{i},row{i}\n".encode() for i in range(5000))

    def dropped() -> Iterator[bytes]:
        yield b"a,b\n"
        yield body
        raise ConnectionError("client went away")

    for mode in ("append", "replace"):
        with pytest.raises(InvalidInput, match="broke off") as caught:
            lake.ingest.ingest_csv("kept", mode, dropped())
        assert isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(InvalidInput):
        lake.ingest.ingest_csv("fresh", "create", dropped())
    assert (lake.keys(), lake.catalog.list()) == before
    assert Catalog(lake.storage).list() == before[1]  # and so after a restart
    assert lake.table(kept).to_pylist() == [{"a": 1, "b": "x"}]
    assert spool_leftovers(lake.settings) == [] and lake.ingest.active == 0


def test_a_failed_commit_removes_the_written_parts(
    lake: LakePieces, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.ingest.ingest_csv("target", "create", [b"a\n1\n"])
    before = lake.keys()
    commit = lake.catalog.commit
    written: list[str] = []

    def racing_commit(name: str, mode: Any, schema: pa.Schema, objects: Any,
                      digest: str | None = None, layout: Any = None) -> Manifest:
        # Another writer swaps the schema after our parts are written, before our commit.
        written.extend(o.key for o in objects)
        commit(name, "replace", pa.schema([("z", pa.string())]),
               lake.catalog.get(name).objects)
        return commit(name, mode, schema, objects, digest, layout)

    monkeypatch.setattr(lake.catalog, "commit", racing_commit)
    with pytest.raises(Conflict):
        lake.ingest.ingest_csv("target", "append", [b"a\n2\n"])
    assert len(written) == 1 and written[0] not in before
    assert lake.keys() == before


# -- parts, row groups, concurrency -------------------------------------------------------

def test_parts_roll_and_row_groups_follow_the_settings(settings: Settings,
                                                       tmp_path: Path) -> None:
    lake = LakePieces(with_settings(settings, tmp_path, ingest={
        "rows_per_part": 1000, "row_group_rows": 300, "compression": "zstd"}))
    body = "".join(f"{i},{i * 2}\n" for i in range(2500))
    with capture_logs() as logs:
        manifest = lake.ingest.ingest_csv("parts", "create", chunked(f"a,b\n{body}".encode(),
                                                                     1000))
    assert [o.row_count for o in manifest.objects] == [1000, 1000, 500]
    assert [o.key.rsplit("/", 1)[1] for o in manifest.objects] == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert len({o.key.rsplit("/", 1)[0] for o in manifest.objects}) == 1
    with lake.storage.open_read(manifest.objects[0].key) as handle:
        metadata = pq.ParquetFile(handle).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        300, 300, 300, 100]
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert lake.table(manifest).column("a").to_pylist() == list(range(2500))
    [done] = [e for e in logs if e["event"] == "ingest_done"]
    assert done["rows"] == 2500 and done["bytes"] == len(f"a,b\n{body}")
    assert done["seconds"] >= 0 and done["dataset"] == "parts"


def test_dictionary_encoding_is_kept_for_repetitive_columns_only(lake: LakePieces) -> None:
    body = "".join(f"{i},user{i}@example.com,{['IL', 'CA', 'NY'][i % 3]}\n" for i in range(20_000))
    manifest = lake.ingest.ingest_csv("dictionary", "create", [f"id,email,state\n{body}".encode()])
    with lake.storage.open_read(manifest.objects[0].key) as handle:
        group = pq.ParquetFile(handle).metadata.row_group(0)
    dictionary = {group.column(i).path_in_schema: group.column(i).has_dictionary_page
                  for i in range(group.num_columns)}
    assert dictionary == {"id": False, "email": False, "state": True}
    assert lake.table(manifest).column("state").to_pylist()[:4] == ["IL", "CA", "NY", "IL"]


def test_concurrent_appends_never_lose_a_manifest(lake: LakePieces) -> None:
    data = b"id,zip\n1,00501\n2,60614\n"
    lake.ingest.ingest_csv("shared", "create", [data])
    errors: list[BaseException] = []

    def append() -> None:
        try:
            lake.ingest.ingest_csv("shared", "append", chunked(data, 5))
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=append) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    manifest = lake.catalog.get("shared")
    assert manifest.version == 5 and manifest.row_count == 10
    assert lake.catalog.history("shared") == [1, 2, 3, 4, 5]
    assert Catalog(lake.storage).get("shared").row_count == 10
    assert lake.table(manifest).column("zip").to_pylist() == ["00501", "60614"] * 5
    assert lake.keys() == sorted(o.key for o in manifest.objects)


def test_append_reads_a_csv_with_the_datasets_types(lake: LakePieces) -> None:
    lake.ingest.ingest_csv("zips", "create", [b"zip,n\n00501,1\n"])
    # Alone, this file would infer zip as int64; appended, it takes the dataset's string.
    manifest = lake.ingest.ingest_csv("zips", "append", [b"zip,n\n60614,2\n"])
    assert lake.table(manifest).to_pylist() == [{"zip": "00501", "n": 1},
                                               {"zip": "60614", "n": 2}]
    with pytest.raises(InvalidInput, match="line 2: column 'n' of zips is int64"):
        lake.ingest.ingest_csv("zips", "append", [b"zip,n\n60614,two\n"])
    assert lake.catalog.get("zips").row_count == 2 and len(lake.keys()) == 2


# -- Arrow uploads ------------------------------------------------------------------------

ARROW_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()),
                          ("tags", pa.list_(pa.string()))])


def arrow_batches(count: int, rows: int = 100) -> Iterable[pa.RecordBatch]:
    for n in range(count):
        ids = list(range(n * rows, (n + 1) * rows))
        yield pa.record_batch([pa.array(ids), pa.array([f"n{i}" for i in ids]),
                               pa.array([["a", str(i)] for i in ids])], schema=ARROW_SCHEMA)


def test_arrow_upload_round_trips(lake: LakePieces) -> None:
    manifest = lake.ingest.ingest_arrow("events", "create", ARROW_SCHEMA, arrow_batches(5))
    assert manifest.row_count == 500 and manifest.arrow_schema().equals(ARROW_SCHEMA)
    table = lake.table(manifest)
    assert table.schema.equals(ARROW_SCHEMA)
    assert table.column("id").to_pylist() == list(range(500))
    assert table.column("tags")[7].as_py() == ["a", "7"]
    appended = lake.ingest.ingest_arrow("events", "append", ARROW_SCHEMA, arrow_batches(1))
    assert appended.row_count == 600


def test_arrow_upload_with_no_batches_is_an_empty_dataset(lake: LakePieces) -> None:
    manifest = lake.ingest.ingest_arrow("nothing", "create", ARROW_SCHEMA, [])
    assert manifest.row_count == 0 and len(manifest.objects) == 1
    assert lake.table(manifest).schema.equals(ARROW_SCHEMA)


@pytest.mark.parametrize(("schema", "words"), [
    (pa.schema([("a", pa.int64()), ("A", pa.string())]), "duplicate column name"),
    (pa.schema([(" ", pa.int64())]), "non-empty name"),
    (pa.schema([("x", pa.month_day_nano_interval())]), "Parquet cannot store"),
    (pa.schema([]), "at least one column"),
])
def test_arrow_schema_is_checked_first(
    refusing: LakePieces, schema: pa.Schema, words: str
) -> None:
    lake = refusing
    with pytest.raises(InvalidInput, match=words):
        lake.ingest.ingest_arrow("odd", "create", schema, [])
    assert lake.keys() == [] and lake.catalog.list() == []


def test_arrow_upload_failures_leave_nothing(settings: Settings, tmp_path: Path) -> None:
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"max_upload_bytes": 20_000,
                                      "rows_per_part": 100, "row_group_rows": 100}))
    with pytest.raises(TooLarge):
        lake.ingest.ingest_arrow("big", "create", ARROW_SCHEMA, arrow_batches(1000))
    other = pa.record_batch([pa.array([1])], names=["id"])
    with pytest.raises(InvalidInput, match="stream's schema"):
        lake.ingest.ingest_arrow("mixed", "create", ARROW_SCHEMA,
                                 [*arrow_batches(2), other])

    def dropped() -> Iterator[pa.RecordBatch]:
        yield from arrow_batches(3)
        raise ConnectionResetError("gone")

    with pytest.raises(InvalidInput, match="broke off"):
        lake.ingest.ingest_arrow("dropped", "create", ARROW_SCHEMA, dropped())
    assert lake.keys() == [] and lake.catalog.list() == [] and lake.ingest.active == 0


# -- retries, replacements, compressed and cancelled uploads ---------------------------

PEOPLE = b"id,name\n1,Ada\n2,Grace\n3,Linus\n4,Barbara\n"
MORE_PEOPLE = PEOPLE + b"5,Edsger\n"


def test_a_retried_upload_of_the_same_content_changes_nothing(lake: LakePieces) -> None:
    first = lake.ingest.ingest_csv("people", "create", [PEOPLE])
    assert first.content_digest == "sha256:" + hashlib.sha256(PEOPLE).hexdigest()
    assert not first.unchanged and first.replaced is None
    keys = lake.keys()
    with capture_logs() as logs:
        again = lake.ingest.ingest_csv("people", "create", chunked(PEOPLE))
        gzipped = lake.ingest.ingest_csv("people", "replace", [gzip.compress(PEOPLE)])
    for same in (again, gzipped):
        assert same.unchanged
        assert (same.version, same.objects, same.updated_at) == (
            first.version, first.objects, first.updated_at)
    assert [e["event"] for e in logs if e["event"].startswith("ingest_")] == [
        "ingest_unchanged", "ingest_unchanged"]
    assert lake.keys() == keys and lake.catalog.history("people") == [1]
    assert not lake.catalog.get("people").unchanged  # never stored

    appended = lake.ingest.ingest_csv("people", "append", [PEOPLE])  # never a no-op
    assert (appended.version, appended.row_count, appended.unchanged) == (2, 8, False)
    assert appended.content_digest is None and appended.replaced is None


def test_create_over_other_content_reports_the_version_it_replaced(lake: LakePieces) -> None:
    first = lake.ingest.ingest_csv("people", "create", [PEOPLE])
    second = lake.ingest.ingest_csv("people", "create", [MORE_PEOPLE])
    assert (second.version, second.row_count, second.dataset_id) == (2, 5, first.dataset_id)
    assert second.replaced == ReplacedVersion(version=1, row_count=4,
                                              size_bytes=first.size_bytes)
    assert second.to_json_dict()["replaced"] == {"version": 1, "row_count": 4,
                                                  "size_bytes": first.size_bytes}
    third = lake.ingest.ingest_csv("people", "replace", [PEOPLE])
    assert third.replaced is not None and third.replaced.version == 2
    reloaded = Catalog(lake.storage).get("people")  # stored in the manifest
    assert reloaded.replaced == third.replaced
    assert reloaded.content_digest == first.content_digest
    assert lake.table(reloaded).num_rows == 4


def test_an_arrow_retry_keeps_no_new_objects(lake: LakePieces) -> None:
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    first = lake.ingest.ingest_arrow("ranks", "create", table.schema, table.to_batches(2))
    keys = lake.keys()
    again = lake.ingest.ingest_arrow("ranks", "replace", table.schema, table.to_batches(2))
    assert again.unchanged and again.version == first.version
    assert lake.keys() == keys
    other = table.slice(1)
    changed = lake.ingest.ingest_arrow("ranks", "create", other.schema, other.to_batches())
    assert changed.replaced is not None and (changed.replaced.version,
                                             changed.replaced.row_count) == (1, 3)
    assert changed.content_digest not in (None, first.content_digest)


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("compress", [gzip.compress, zstd], ids=["gzip", "zstd"])
def test_compressed_csv_is_ingested(lake: LakePieces, compress) -> None:
    manifest = lake.ingest.ingest_csv("people", "create", chunked(compress(MORE_PEOPLE), 5))
    assert lake.table(manifest).to_pylist()[-1] == {"id": 5, "name": "Edsger"}
    assert manifest.content_digest == "sha256:" + hashlib.sha256(MORE_PEOPLE).hexdigest()


def test_a_parquet_upload_is_stored_as_it_is_and_a_broken_one_leaves_nothing(
        lake: LakePieces) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1]}), sink)
    data = sink.getvalue().to_pybytes()
    manifest = lake.ingest.ingest_csv("parquet", "create", [data])
    assert manifest.row_count == 1 and lake.storage.get(manifest.objects[0].key) == data
    with pytest.raises(InvalidInput, match="Parquet") as caught:
        lake.ingest.ingest_csv("broken", "create", [data[:-30]])
    assert caught.value.to_dict()["format"] == "parquet"
    assert not [key for key in lake.keys() if "/broken/" in key]  # noqa: SIM118
    assert [m.name for m in lake.catalog.list()] == ["parquet"]


def test_a_failed_first_upload_leaves_no_dataset_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 64 * 1024)
    lake = LakePieces(with_settings(settings, tmp_path, ingest={"sample_bytes": 4096,
                                                          "rows_per_part": 1_000}))
    lines = ["n,text"] + [f"{i},row {i}" for i in range(20_000)] + ["20000,a,b"]
    with pytest.raises(InvalidInput):  # parts were written before the bad line was met
        lake.ingest.ingest_csv("late", "create", ["\n".join(lines).encode()])
    assert lake.storage.list("datasets") == []
    if settings.storage.uri.startswith("s3://"):
        return
    assert not Path(lake.storage.root, "datasets", "late").exists()


def test_a_cancelled_upload_is_logged_as_cancelled(lake: LakePieces) -> None:
    def cancelled() -> Iterator[bytes]:
        yield PEOPLE[:20]
        raise Cancelled("the client cancelled the upload before it ended")

    with capture_logs() as logs, pytest.raises(Cancelled):
        lake.ingest.ingest_csv("people", "create", cancelled())
    events = [e for e in logs if e["event"].startswith("ingest_")]
    assert [(e["event"], e["error"]) for e in events] == [("ingest_cancelled", "cancelled")]
    assert lake.keys() == [] and lake.catalog.list() == []
