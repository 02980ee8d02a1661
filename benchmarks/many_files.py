"""Many files, one dataset: the workers CSV in ``PARTS`` files against the same rows in one
(issue 14).

The CSV is cut into ``PARTS`` files at record boundaries (a quoted value may span lines), each
with the header. One ``flight-lake serve`` on a local folder takes both, through the project's
own client as a user calls it: ``ingest_csv([...])`` stages the files in one transaction, the
first alone, the others up to ``max_streams`` at a time, and commits them once;
``ingest_csv(path)`` sends the single file over one DoPut. Rounds alternate which goes
first; round 0 warms up and is not kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import flight_lake_client
from benchmarks import harness
from benchmarks.harness import LakeServer, check
from flight_lake_client.client import DEFAULT_STREAMS

PARTS = 8


@dataclass
class Result:
    rows: int
    csv_bytes: int
    parts: int
    streams: int
    load: str  # the machine's load average as the rounds began
    seconds: dict[str, list[float]] = field(default_factory=dict)  # "many" / "one" -> samples


def split_csv(path: Path, parts: int, out: Path) -> list[Path]:
    """``path`` cut into ``parts`` files of about equal size, at record boundaries (a newline
    outside quotes), each starting with the header line."""
    size = path.stat().st_size
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    with path.open("rb") as source:
        header = source.readline()
        quotes, index, target = 0, 0, 0
        handle = None
        for line in source:
            if handle is None or (quotes % 2 == 0 and source.tell() > target
                                  and index < parts):
                if handle is not None:
                    handle.close()
                files.append(out / f"part-{index}.csv")
                handle = files[-1].open("wb")
                handle.write(header)
                index += 1
                target = size * index // parts
            handle.write(line)
            quotes += line.count(b'"')
        if handle is not None:
            handle.close()
    return files


def run(csv_path: Path, work: Path, repeats: int, parts: int = PARTS) -> Result:
    """``repeats`` interleaved rounds of the ``parts`` files against the one file."""
    meta = harness.fixture_meta(csv_path)
    files = split_csv(csv_path, parts, work / "many_files_parts")
    server = LakeServer({"FLIGHT_LAKE_STORAGE__URI": str(work / "lake_many"),
                         "FLIGHT_LAKE_INGEST__MAX_UPLOAD_BYTES": str(2 * meta["bytes"] + 1024)},
                        work / "many")
    load = "load average {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())
    result = Result(meta["rows"], meta["bytes"], len(files), DEFAULT_STREAMS, load)
    try:
        server.start()
        with flight_lake_client.connect(server.flight_url) as client:
            for index in range(repeats + 1):
                contenders: list[tuple[str, Path | list[Path]]] = [("many", list(files)),
                                                                    ("one", csv_path)]
                for label, source in contenders[index % 2:] + contenders[:index % 2]:
                    started = time.perf_counter()
                    manifest = client.ingest_csv(source, name=f"{label}_{index}",
                                                 max_streams=DEFAULT_STREAMS)
                    elapsed = time.perf_counter() - started
                    check(manifest.row_count == meta["rows"] and manifest.version == 1,
                          f"{label}: {manifest.row_count} rows, version {manifest.version}")
                    if index:
                        result.seconds.setdefault(label, []).append(elapsed)
    finally:
        server.stop()
    return result


def section(result: Result | None) -> list[str]:
    if result is None:
        return []
    many, one = (harness.median(result.seconds[label]) for label in ("many", "one"))
    rounds = len(result.seconds["one"])
    spread = {label: f"{min(values):.2f}-{max(values):.2f}"
              for label, values in result.seconds.items()}
    return [
        f"## 12. Many files, one dataset: {result.parts} files against one "
        f"({result.rows:,} rows, {result.csv_bytes / 2**20:.1f} MiB)",
        "",
        f"The same CSV as {result.parts} files (cut at record boundaries, each with the "
        "header) and as one file, into one `flight-lake serve` on local storage through the "
        f"project's client: `ingest_csv([{result.parts} paths])` stages the files in one "
        f"transaction (the first alone, the rest up to {result.streams} streams at a time) "
        "and commits once; `ingest_csv(path)` is one DoPut. Medians of "
        f"{rounds} interleaved rounds (which goes first alternates); {result.load} as the "
        "rounds began.",
        "",
        "| upload | s (p50) | spread | MB/s | vs one file |",
        "|---|---|---|---|---|",
        f"| {result.parts} files, one transaction | {many:.2f} | {spread['many']} | "
        f"{result.csv_bytes / 1e6 / many:.0f} | {many / one:.2f} |",
        f"| one file | {one:.2f} | {spread['one']} | {result.csv_bytes / 1e6 / one:.0f} | "
        "1.00 |",
        "",
    ]
