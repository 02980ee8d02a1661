"""The CSV ingest pipeline: receiving, parsing and writing overlap; line breaks in values are
found from the data (read again the slow way when the sample did not show them); wide rows
are read in large blocks and written in row groups bounded by ``ingest.row_group_bytes``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from flight_lake import csv_schema
from flight_lake import ingest as ingest_module
from flight_lake import spool as spool_module
from flight_lake.catalog import Catalog
from flight_lake.csv_input import CsvInput
from flight_lake.errors import TooLarge
from flight_lake.ingest import IngestService
from flight_lake.settings import Settings
from flight_lake.spool import READAHEAD_BLOCKS, Spool
from flight_lake.storage import Storage
from tests.support import make_settings


def _service(settings: Settings, tmp_path: Path, **ingest: object) -> IngestService:
    configured = make_settings(settings.storage, tmp_path, ingest=ingest)
    storage = Storage.from_settings(configured.storage)
    return IngestService(storage, Catalog(storage), configured)


def _rows(service: IngestService, name: str) -> list[dict]:
    manifest = service.catalog.get(name)
    rows: list[dict] = []
    for data_object in manifest.objects:
        with service.storage.open_read(data_object.key) as handle:
            rows += pq.read_table(handle).to_pylist()
    return rows


def test_rows_are_parsed_and_written_while_the_upload_still_arrives(
    local_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 64 * 1024)  # the head is 3 blocks
    service = _service(local_settings, tmp_path, sample_bytes=4096, row_group_rows=1_000,
                       rows_per_part=10_000)
    head = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(20_000))
    tail = b"".join(b"%d,n%d\n" % (i, i) for i in range(20_000, 21_000))
    written = threading.Event()

    def upload() -> Iterator[bytes]:
        yield head
        # The rest comes only once a part of the first rows is in storage: were the upload
        # received whole before parsing, this would wait forever (and fail after 20 s).
        for _ in range(200):
            if any(o.key.endswith(".parquet") for o in service.storage.list("datasets")):
                written.set()
                break
            threading.Event().wait(0.1)
        yield tail

    manifest = service.ingest_csv("streamed", "create", upload())
    assert written.is_set()
    assert manifest.row_count == 21_000 and len(manifest.objects) == 3
    assert [row["id"] for row in _rows(service, "streamed")] == list(range(21_000))


def test_an_upload_failing_after_parsing_began_commits_nothing(
    local_settings: Settings, tmp_path: Path,
) -> None:
    service = _service(local_settings, tmp_path, sample_bytes=4096, row_group_rows=1_000,
                       max_upload_bytes=200_000)
    data = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(30_000))
    with pytest.raises(TooLarge):
        service.ingest_csv("big", "create", (data[i:i + 8192] for i in range(0, len(data), 8192)))
    assert service.storage.list("datasets") == [] and service.catalog.list() == []
    assert list(tmp_path.glob("flight-lake-upload-*")) == []


def test_line_breaks_in_values_after_the_sample_are_read_again_without_losing_rows(
    local_settings: Settings, tmp_path: Path,
) -> None:
    service = _service(local_settings, tmp_path, sample_bytes=4096)
    plain = [f"{i},plain {i}" for i in range(2_000)]  # the sample has no line break
    broken = [f'{i},"line one of {i}\nline two, with a comma\nthree"' for i in range(2_000, 40_000)]
    data = ("n,text\n" + "\n".join(plain + broken) + "\n").encode()
    with capture_logs() as logs:
        manifest = service.ingest_csv("notes", "create", [data])
    assert manifest.row_count == 40_000
    assert [e["event"] for e in logs].count("csv_values_span_lines") == 1
    rows = _rows(service, "notes")
    assert [row["n"] for row in rows] == list(range(40_000))
    assert rows[1_999]["text"] == "plain 1999"
    assert rows[39_999]["text"] == "line one of 39999\nline two, with a comma\nthree"


def test_line_breaks_in_the_sample_are_followed_from_the_start(
    local_settings: Settings, tmp_path: Path,
) -> None:
    service = _service(local_settings, tmp_path, sample_bytes=4096)
    data = "".join(f'{i},"a\nb {i}"\n' for i in range(20_000)).encode()
    with capture_logs() as logs:
        manifest = service.ingest_csv("notes", "create", [b"n,text\n" + data])
    assert manifest.row_count == 20_000
    assert "csv_values_span_lines" not in [e["event"] for e in logs]  # no pass was wasted
    assert _rows(service, "notes")[-1] == {"n": 19_999, "text": "a\nb 19999"}


def test_wide_rows_are_written_in_row_groups_bounded_by_bytes(
    local_settings: Settings, tmp_path: Path,
) -> None:
    service = _service(local_settings, tmp_path, sample_bytes=4096, row_group_bytes=256 * 1024)
    columns, rows = 300, 600
    header = ",".join(f"c{j}" for j in range(columns))
    lines = [",".join(str(i * columns + j) for j in range(columns)) for i in range(rows)]
    lines[500] = lines[500].replace(f",{500 * columns + 7},", f",0{500 * columns + 7},")
    with capture_logs() as logs:
        manifest = service.ingest_csv("wide", "create",
                                      [(header + "\n" + "\n".join(lines) + "\n").encode()])
    types = {c.name: c.type for c in manifest.columns}
    assert types["c7"] == "string" and types["c6"] == types["c8"] == "int64"
    assert [(e["column"], e["reason"]) for e in logs if
            e["event"] == "column_defaulted_to_string"] == [
        ("c7", "leading zeros after the sample")]
    with service.storage.open_read(manifest.objects[0].key) as handle:
        metadata = pq.ParquetFile(handle).metadata
    assert metadata.num_row_groups > 1  # not one group of all 600 rows (~1.4 MB in Arrow)
    table = _rows(service, "wide")
    assert table[599]["c299"] == 599 * columns + 299 and table[500]["c7"] == f"0{500 * 300 + 7}"


def test_arrow_reads_a_received_upload_no_further_ahead_than_the_spool_bound(
    tmp_path: Path,
) -> None:
    # Arrow's CSV reader reads up to 32 blocks ahead of its parsing: a wide file read in
    # 16 MiB blocks was held whole in memory. The spool reader makes it wait instead.
    block, columns = 64 * 1024, 200
    header = ",".join(f"c{j}" for j in range(columns)) + "\n"
    rows = [",".join(str(i + j) for j in range(columns)) + "\n" for i in range(4_000)]
    data = (header + "".join(rows)).encode()  # ~3.5 MiB: 50 blocks
    seen: list[int] = []
    with Spool.receiving(CsvInput([data], len(data)), str(tmp_path)) as spooled:
        spooled.complete()  # all received: only the bound can hold Arrow back
        with spooled.reader(readahead_bytes=0) as handle, pacsv.open_csv(
                handle, read_options=csv_schema.read_options(block, threads=False),
                parse_options=csv_schema.parse_options(csv_schema.RowRecorder(), False),
        ) as reader:
            total = 0
            for batch in reader:
                threading.Event().wait(0.005)  # a slow consumer: the reader would run ahead
                seen.append(handle.held)
                total += batch.num_rows
        assert total == 4_000 and len(seen) > 20
        assert max(seen) <= READAHEAD_BLOCKS * block <= 4 * block  # Arrow alone: 32 blocks
        # an Arrow reader dropped half-way does not hang on a read waiting for the bound
        with spooled.reader(readahead_bytes=0) as handle, pacsv.open_csv(
                handle, read_options=csv_schema.read_options(block, threads=False)) as reader:
            assert reader.read_next_batch().num_rows > 0
        del reader


def test_a_reader_that_needs_more_than_the_spool_bound_is_not_left_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrow holds three of its blocks to go on (the previous one's tail, the current one, the
    # next); a bound of two would wait for ever, so a stalled read grows it instead.
    monkeypatch.setattr(spool_module, "READAHEAD_BLOCKS", 2)
    monkeypatch.setattr(spool_module, "STALL_SECONDS", 0.2)
    block = 16 * 1024
    data = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(20_000))
    with Spool.receiving(CsvInput([data], len(data)), str(tmp_path)) as spooled, \
            capture_logs() as logs:
        spooled.complete()
        with spooled.reader(readahead_bytes=0) as handle, pacsv.open_csv(
                handle, read_options=csv_schema.read_options(block, threads=False)) as reader:
            assert reader.read_all().column("a").to_pylist() == list(range(20_000))
    assert "spool_readahead_grown" in [e["event"] for e in logs]
