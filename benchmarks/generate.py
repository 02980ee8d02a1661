"""Deterministic generator of the ``workers_500k.csv`` fixture (workers of a staffing business).

Thirteen columns: ``id, first_name, last_name, email, role, state, zip, hourly_rate,
years_experience, hire_date, active, score, notes``. Zip codes keep their leading zeros,
``score`` is sometimes empty, and ``notes`` is free text with commas, double quotes and,
now and then, an embedded newline (quoted as RFC 4180 says).

Rows are made in fixed blocks of ``BLOCK_ROWS``; block ``k`` draws from its own generator
seeded with ``(seed, k)``. So the same seed gives a byte-identical file, and a file of ``n``
rows is a prefix of any longer file with the same seed. The file is streamed to disk block
by block, so ``--target-bytes`` can make a ~1 GB file in bounded memory.

    python -m benchmarks.generate --rows 500000 --out workers_500k.csv
    python -m benchmarks.generate --target-bytes 1000000000 --out workers_1g.csv
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEED = 20240501
DEFAULT_ROWS = 500_000
BLOCK_ROWS = 50_000
# Bump when the output for a given seed changes, so cached fixtures are rebuilt.
GENERATOR_VERSION = 1

COLUMNS = (
    "id", "first_name", "last_name", "email", "role", "state", "zip", "hourly_rate",
    "years_experience", "hire_date", "active", "score", "notes",
)  # fmt: skip
HEADER = (",".join(COLUMNS) + "\n").encode()


def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split())


FIRST_NAMES = _split(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily "
    "Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Dorothy "
    "Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan Emma Stephen Brenda Larry "
    "Pamela Justin Nicole Scott Anna Brandon Samantha Benjamin Katherine Samuel Christine "
    "Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack Olivia "
    "Dennis Heather Jerry Helen Tyler Catherine Aaron Diane Jose Julie Adam Victoria Nathan "
    "Joyce Henry Lauren Zachary Kelly Douglas Christina Peter Ruth Kyle Joan Noah Virginia "
    "Ethan Judith Jeremy Evelyn Christian Hannah Walter Andrea Keith Megan Austin Cheryl "
    "Roger Jacqueline Terry Madison Sean Teresa Gerald Abigail Carl Sophia Dylan Martha "
    "Harold Sara Jordan Gloria Jesse Janice Bryan Kathryn Lawrence Ann Arthur Isabella "
    "Gabriel Judy Bruce Charlotte Logan Julia Billy Grace Joe Amber Alan Alice Juan Jean "
    "Elijah Denise Willie Frances Albert Danielle Wayne Marilyn Randy Natalie Mason Beverly "
    "Vincent Diana Liam Brittany Roy Theresa Bobby Kayla Caleb Alexis Bradley Doris Russell "
    "Lori Lucas Tiffany José Zoë Renée André Chloé Siobhán Ngozi Wei Priya Hiroshi Aisha"
)

LAST_NAMES = _split(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed "
    "Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales "
    "Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds "
    "Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar "
    "Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington "
    "Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson "
    "Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Muñoz Hunt Hicks Holmes "
    "Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant "
    "Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley "
    "Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews O'Brien "
    "O'Connor D'Angelo Van-Dyke Okafor Kowalski Nakamura Oyelaran Ó-Súilleabháin"
)

ROLES = (
    "Picker", "Forklift Driver", "RN", "CNA", "Welder", "Electrician", "Line Cook", "Developer",
    "Analyst", "Call Center Agent", "Admin Assistant", "Truck Driver", "Carpenter", "Plumber",
    "Security Guard", "Janitor", "Accountant", "Medical Assistant", "Machinist", "HVAC Tech",
    "Cashier", "Project Manager", "Receptionist", "Packer",
)  # fmt: skip
ROLE_WEIGHTS = (
    14, 9, 6, 6, 4, 4, 5, 3, 2, 7, 6, 6, 3, 2, 5, 4, 2, 3, 2, 2, 5, 2, 3, 8,
)  # fmt: skip

# 50 states and DC, weighted roughly by population (so IL is a few percent of rows).
STATES = _split(
    "CA TX FL NY PA IL OH GA NC MI NJ VA WA AZ MA TN IN MO MD WI CO MN SC AL LA KY OR OK CT "
    "UT IA NV AR MS KS NM NE ID WV HI NH ME RI MT DE SD ND AK DC VT WY"
)
STATE_WEIGHTS = (
    39,
    30,
    22,
    20,
    13,
    12.6,
    11.8,
    10.9,
    10.7,
    10,
    9.3,
    8.7,
    7.8,
    7.4,
    7,
    7,
    6.8,
    6.2,
    6.2,
    5.9,
    5.8,
    5.7,
    5.3,
    5.1,
    4.6,
    4.5,
    4.3,
    4,
    3.6,
    3.4,
    3.2,
    3.2,
    3,
    2.9,
    2.9,
    2.1,
    2,
    1.9,
    1.8,
    1.4,
    1.4,
    1.4,
    1.1,
    1.1,
    1,
    0.9,
    0.8,
    0.7,
    0.7,
    0.6,
    0.6,
)
# First zip digit by state (0 = New England/NJ/PR, so those zips start with a zero).
ZIP_FIRST_DIGIT = {
    "CT": 0, "MA": 0, "ME": 0, "NH": 0, "NJ": 0, "RI": 0, "VT": 0, "NY": 1, "PA": 1, "DE": 1,
    "DC": 2, "MD": 2, "VA": 2, "WV": 2, "NC": 2, "SC": 2, "GA": 3, "FL": 3, "AL": 3, "TN": 3,
    "MS": 3, "KY": 4, "OH": 4, "IN": 4, "MI": 4, "IA": 5, "WI": 5, "MN": 5, "SD": 5, "ND": 5,
    "MT": 5, "IL": 6, "MO": 6, "KS": 6, "NE": 6, "LA": 7, "AR": 7, "OK": 7, "TX": 7, "CO": 8,
    "WY": 8, "ID": 8, "UT": 8, "AZ": 8, "NM": 8, "NV": 8, "CA": 9, "OR": 9, "WA": 9, "AK": 9,
    "HI": 9,
}  # fmt: skip

_SHIFTS = ("day", "night", "weekend", "swing", "split", "early")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WORDS = _split(
    "reliable punctual certified bilingual flexible experienced detail-oriented friendly "
    "forklift OSHA-10 CPR first-aid overtime remote onsite client supervisor badge safety "
    "training references background-check drug-screen uniform parking commute relocation"
)
_QUOTES = ("great hire", "would rebook", "needs coaching", "top performer", "no-show once")
NOTES_POOL = 4096


@dataclass(frozen=True)
class Generated:
    path: Path
    rows: int
    bytes: int
    sha256: str
    seconds: float


def _weights(values: tuple[float, ...]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array / array.sum()


def _ascii(name: str) -> str:
    """The e-mail spelling of a name: lower case, no accents or punctuation."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(char for char in plain.lower() if char.isalnum())


def _csv_field(text: str) -> str:
    """Quote a field only when it needs it, as spreadsheet exports do."""
    if any(char in text for char in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _notes_pool(seed: int) -> list[str]:
    """Free-text notes: commas, quotes, sometimes a newline, sometimes empty."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    pool = []
    for index in range(NOTES_POOL):
        kind = index % 8
        word = _WORDS[rng.integers(0, len(_WORDS))]
        shift = _SHIFTS[rng.integers(0, len(_SHIFTS))]
        day = _DAYS[rng.integers(0, len(_DAYS))]
        quote = _QUOTES[rng.integers(0, len(_QUOTES))]
        if kind < 4:
            text = ""
        elif kind == 4:
            text = f"Prefers {shift} shifts, from {day}"
        elif kind == 5:
            text = f'Client: "{quote}", {word}'
        elif kind == 6:
            text = f"Badge {rng.integers(100, 9999)}, 6'2\", {word}"
        else:
            text = f"{word.capitalize()}, {shift} shift only"
        if rng.random() < 0.01:
            text += f"\nCall back {day}"
        pool.append(_csv_field(text))
    return pool


class _Block:
    """Everything that does not change between blocks, built once per seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.first = np.asarray(FIRST_NAMES, dtype=object)
        self.last = np.asarray(LAST_NAMES, dtype=object)
        self.first_initial = np.asarray([_ascii(n)[0] for n in FIRST_NAMES], dtype=object)
        self.last_lower = np.asarray([_ascii(n) for n in LAST_NAMES], dtype=object)
        self.roles = np.asarray(ROLES, dtype=object)
        self.states = np.asarray(STATES, dtype=object)
        self.role_p = _weights(ROLE_WEIGHTS)
        self.state_p = _weights(STATE_WEIGHTS)
        self.zip_base = np.asarray([ZIP_FIRST_DIGIT[s] * 10_000 for s in STATES], dtype=np.int64)
        self.notes = np.asarray(_notes_pool(seed), dtype=object)

    def render(self, index: int) -> bytes:
        """Block ``index``: rows ``index*BLOCK_ROWS+1 …`` as CSV bytes (no header)."""
        rng = np.random.default_rng([self.seed, index])
        n = BLOCK_ROWS
        ids = np.arange(index * n + 1, (index + 1) * n + 1).tolist()
        first_i = rng.integers(0, len(self.first), n)
        last_i = rng.integers(0, len(self.last), n)
        role_i = rng.choice(len(self.roles), n, p=self.role_p)
        state_i = rng.choice(len(self.states), n, p=self.state_p)
        zips = self.zip_base[state_i] + rng.integers(0, 10_000, n)
        cents = rng.integers(1500, 9500, n)
        years = rng.integers(0, 41, n)
        days = rng.integers(0, 9496, n)  # 2000-01-01 … 2025-12-31
        active = rng.random(n) < 0.82
        score_tenths = rng.integers(0, 1001, n)
        score_empty = rng.random(n) < 0.07
        notes_i = rng.integers(0, len(self.notes), n)

        hire = (np.datetime64("2000-01-01") + days).astype(str).tolist()
        rate = [f"{c // 100}.{c % 100:02d}" for c in cents.tolist()]
        score = [
            "" if empty else f"{s / 10:.1f}"
            for s, empty in zip(score_tenths.tolist(), score_empty.tolist(), strict=True)
        ]
        columns = zip(
            ids,
            self.first[first_i].tolist(),
            self.last[last_i].tolist(),
            self.first_initial[first_i].tolist(),
            self.last_lower[last_i].tolist(),
            self.roles[role_i].tolist(),
            self.states[state_i].tolist(),
            zips.tolist(),
            rate,
            years.tolist(),
            hire,
            np.where(active, "true", "false").tolist(),
            score,
            self.notes[notes_i].tolist(),
            strict=True,
        )
        lines = [
            f"{i},{fn},{ln},{fl}{ll}{i}@example.com,{ro},{st},{z:05d},{ra},{ye},{hd},{ac},{sc},{no}\n"
            for i, fn, ln, fl, ll, ro, st, z, ra, ye, hd, ac, sc, no in columns
        ]
        return "".join(lines).encode()


def iter_csv(
    rows: int | None = DEFAULT_ROWS,
    *,
    target_bytes: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Iterator[bytes]:
    """Yield the CSV file in pieces: the header, then blocks of rows.

    With ``rows`` the file has exactly that many rows. With ``target_bytes`` (and
    ``rows=None``) whole blocks are written until the file reaches at least that size.
    """
    if (rows is None) == (target_bytes is None):
        raise ValueError("give exactly one of rows or target_bytes")
    if rows is not None and rows < 0:
        raise ValueError("rows must be >= 0")
    block = _Block(seed)
    yield HEADER
    written_bytes = len(HEADER)
    index = 0
    while True:
        if rows is not None:
            remaining = rows - index * BLOCK_ROWS
            if remaining <= 0:
                return
        elif target_bytes is not None and written_bytes >= target_bytes:
            return
        data = block.render(index)
        if rows is not None and remaining < BLOCK_ROWS:
            # Cut at the end of row number ``remaining``; notes may hold newlines, so find
            # the start of the next row by its id rather than counting lines.
            cut = data.find(f"\n{index * BLOCK_ROWS + remaining + 1},".encode())
            data = data[: cut + 1]
        yield data
        written_bytes += len(data)
        index += 1


def write_csv(
    out: str | Path,
    rows: int | None = DEFAULT_ROWS,
    *,
    target_bytes: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Generated:
    """Stream the CSV to ``out`` (via a temporary file renamed into place)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    blocks = 0
    try:
        with partial.open("wb") as sink:
            for piece in iter_csv(rows, target_bytes=target_bytes, seed=seed):
                sink.write(piece)
                digest.update(piece)
                size += len(piece)
                blocks += 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    if rows is None:
        rows = (blocks - 1) * BLOCK_ROWS
    return Generated(path, rows, size, digest.hexdigest(), time.perf_counter() - started)


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
