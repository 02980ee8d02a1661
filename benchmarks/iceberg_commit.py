"""What mirroring each commit into its Iceberg table adds to an ingest.

``python -m benchmarks.iceberg_commit [--commits 30] [--storage folder|s3]`` commits
``--commits`` one-row CSV appends to each of two datasets in turn, through the ingest service
over a temporary folder (or moto's S3): one dataset mirrored into its Iceberg table after
every commit (the catalog listener the server subscribes), the other not. It prints the
p50/p90 ingest time of each and the difference: the mirror's cost per commit. pyiceberg is
imported before the first sample (a server pays that once, on its first commit).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from flight_lake.catalog import Catalog, Manifest
from flight_lake.iceberg.tables import IcebergTables
from flight_lake.ingest import IngestService
from flight_lake.settings import load_settings
from flight_lake.storage import Storage

MIRRORED, PLAIN = "mirrored", "plain"


def measure(commits: int, storage_env: dict[str, str], spool: Path) -> dict[str, list[float]]:
    overrides = {"storage": {key.removeprefix("FLIGHT_LAKE_STORAGE__").lower(): value
                             for key, value in storage_env.items()},
                 "ingest": {"spool_dir": str(spool)}}
    settings = load_settings(config_file=None, secrets_file=None, **overrides)
    storage = Storage.from_settings(settings.storage)
    catalog = Catalog(storage)
    tables = IcebergTables(storage, catalog, settings.storage)

    def mirror(manifest: Manifest) -> None:
        if manifest.name == MIRRORED:
            tables.on_commit(manifest)

    catalog.subscribe(mirror)
    ingest = IngestService(storage, catalog, settings)
    import flight_lake.iceberg.snapshots  # noqa: F401  (the import is not a commit's cost)

    seconds: dict[str, list[float]] = {MIRRORED: [], PLAIN: []}
    for round_ in range(commits + 1):
        for name in (MIRRORED, PLAIN):
            body = f"id,note\n{round_},row {round_}\n".encode()
            started = time.perf_counter()
            ingest.ingest_csv(name, "create" if round_ == 0 else "append", [body])
            if round_:  # the first commit creates the dataset: not an append
                seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--storage", choices=("folder", "s3"), default="folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.storage == "s3":
            with harness.MotoS3() as s3:
                s3.create_bucket("iceberg-commit")
                seconds = measure(args.commits, s3.storage_env("iceberg-commit"), Path(folder))
        else:
            env = {"FLIGHT_LAKE_STORAGE__URI": str(Path(folder) / "lake")}
            seconds = measure(args.commits, env, Path(folder))
    p50 = {name: statistics.median(samples) * 1000 for name, samples in seconds.items()}
    for name, samples in seconds.items():
        p90 = statistics.quantiles(samples, n=10)[-1] * 1000
        print(f"{args.storage} {name}: p50 {p50[name]:.1f} ms, p90 {p90:.1f} ms "
              f"over {len(samples)} appends")
    print(f"{args.storage}: the mirror adds {p50[MIRRORED] - p50[PLAIN]:.1f} ms per commit (p50)")


if __name__ == "__main__":
    main()
