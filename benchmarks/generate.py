"""The ``workers`` CSV fixture for the benchmarks: a thin command over ``flight_lake.sample_data``.

The generator itself lives in the package (``flight-lake sample workers`` runs it after a
plain ``pip install .``); this module keeps the benchmarks' command and names.

    python -m benchmarks.generate --rows 500000 --out workers_500k.csv
    python -m benchmarks.generate --target-bytes 1000000000 --out workers_1g.csv
"""

from __future__ import annotations

import argparse
import sys

from flight_lake.sample_data import (
    BLOCK_ROWS,
    COLUMNS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    Generated,
    iter_csv,
    write_csv,
)

__all__ = [
    "BLOCK_ROWS",
    "COLUMNS",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "Generated",
    "iter_csv",
    "main",
    "write_csv",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate", description=__doc__.split("\n\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, help=f"rows to write (default {DEFAULT_ROWS})")
    size.add_argument("--target-bytes", type=int, help="write whole blocks up to this size")
    parser.add_argument("--out", required=True, help="the CSV file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None or args.target_bytes else DEFAULT_ROWS
    result = write_csv(args.out, rows, target_bytes=args.target_bytes, seed=args.seed)
    print(
        f"wrote {result.path} rows={result.rows} bytes={result.bytes} "
        f"sha256={result.sha256} seconds={result.seconds:.2f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
