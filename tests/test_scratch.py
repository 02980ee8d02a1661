"""Scratch files and folders: start-up collection removes only what no live ingest holds,
even while new ones are being created beside it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flight_lake import scratch


def test_collection_racing_new_claims_never_takes_one(tmp_path: Path) -> None:
    stop = threading.Event()
    collected: list[str] = []

    def collect_all_the_time() -> None:
        while not stop.is_set():
            collected.extend(scratch.collect(str(tmp_path), "upload-*.csv"))
            collected.extend(scratch.collect(str(tmp_path), "layout-*"))

    collector = threading.Thread(target=collect_all_the_time)
    collector.start()
    held: list[tuple[int, str]] = []
    try:
        for _ in range(300):
            held.append(scratch.claim_file(str(tmp_path), "upload-", ".csv"))
            held.append(scratch.claim_folder(str(tmp_path), "layout-"))
    finally:
        stop.set()
        collector.join()
    assert collected == []
    assert all(os.path.exists(path) for _, path in held)
    for descriptor, _ in held:  # the ingests end without removing their files: a crash
        os.close(descriptor)
    assert len(scratch.collect(str(tmp_path), "upload-*.csv")) == 300
    assert len(scratch.collect(str(tmp_path), "layout-*")) == 300
    assert list(tmp_path.iterdir()) == []


def test_a_hidden_leftover_goes_once_a_minute_old(tmp_path: Path) -> None:
    fresh = tmp_path / ".upload-fresh.csv"
    stale = tmp_path / ".upload-stale.csv"
    fresh.write_bytes(b"a")
    stale.write_bytes(b"b")
    long_ago = time.time() - 120
    os.utime(stale, (long_ago, long_ago))
    assert scratch.collect(str(tmp_path), "upload-*.csv") == [str(stale)]
    assert fresh.exists()
