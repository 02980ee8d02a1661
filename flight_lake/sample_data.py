"""Sample data: the deterministic ``workers`` CSV (workers of a staffing business).

Thirteen columns: ``id, first_name, last_name, email, role, state, zip, hourly_rate,
years_experience, hire_date, active, score, notes``. Zip codes keep their leading zeros,
``score`` is sometimes empty, and ``notes`` is free text with commas, double quotes and,
now and then, an embedded newline (quoted as RFC 4180 says).

Rows are made in fixed blocks of ``BLOCK_ROWS``; block ``k`` draws from its own generator
seeded with ``(seed, k)``. So the same seed gives a byte-identical file, and a file of ``n``
rows is a prefix of any longer file with the same seed. The file is streamed to disk block
by block, so ``target_bytes`` can make a ~1 GB file in bounded memory.

Plain Python, so ``flight-lake sample workers`` works after ``pip install .``: the random
numbers are NumPy's ``default_rng`` stream (SeedSequence → PCG64, Lemire's bounded integers,
53-bit doubles, ``choice`` by cumulative weights) re-implemented bit for bit, so the files
are byte-identical to those the NumPy version of this generator made.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

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
    39, 30, 22, 20, 13, 12.6, 11.8, 10.9, 10.7, 10, 9.3, 8.7, 7.8, 7.4, 7, 7, 6.8, 6.2, 6.2,
    5.9, 5.8, 5.7, 5.3, 5.1, 4.6, 4.5, 4.3, 4, 3.6, 3.4, 3.2, 3.2, 3, 2.9, 2.9, 2.1, 2, 1.9,
    1.8, 1.4, 1.4, 1.4, 1.1, 1.1, 1, 0.9, 0.8, 0.7, 0.7, 0.6, 0.6,
)  # fmt: skip
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
_EPOCH = date(2000, 1, 1)

_MASK32 = 0xFFFF_FFFF
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF
_MASK128 = (1 << 128) - 1


@dataclass(frozen=True)
class Generated:
    """What ``write_csv`` wrote."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    seconds: float


# -- NumPy's default_rng, bit for bit ------------------------------------------------


def _seed_words(entropy: Sequence[int]) -> list[int]:
    """``SeedSequence(entropy).generate_state(4, uint64)`` as eight uint32 words."""
    words: list[int] = []
    for value in entropy:  # each int becomes its little-endian uint32 words (0 → [0])
        words.append(value & _MASK32)
        value >>= 32
        while value:
            words.append(value & _MASK32)
            value >>= 32
    hash_a = 0x43B0D7E5

    def hashmix(value: int) -> int:
        nonlocal hash_a
        value ^= hash_a
        hash_a = (hash_a * 0x931E8875) & _MASK32
        value = (value * hash_a) & _MASK32
        return value ^ (value >> 16)

    def mix(x: int, y: int) -> int:
        result = (0xCA01F9DD * x - 0x4973F715 * y) & _MASK32
        return result ^ (result >> 16)

    pool = [hashmix(words[i] if i < len(words) else 0) for i in range(4)]
    for source in range(4):
        for target in range(4):
            if source != target:
                pool[target] = mix(pool[target], hashmix(pool[source]))
    for extra in words[4:]:
        for target in range(4):
            pool[target] = mix(pool[target], hashmix(extra))
    hash_b = 0x8B51F9DD
    state = []
    for index in range(8):
        value = pool[index % 4] ^ hash_b
        hash_b = (hash_b * 0x58F38DED) & _MASK32
        value = (value * hash_b) & _MASK32
        state.append(value ^ (value >> 16))
    return state


class Random:
    """NumPy's ``Generator(PCG64(SeedSequence(entropy)))`` for the draws used here."""

    _MULTIPLIER = 0x2360ED051FC65DA44385DF649FCCF645

    def __init__(self, entropy: Sequence[int]) -> None:
        words = _seed_words(entropy)
        state64 = [words[i] | (words[i + 1] << 32) for i in range(0, 8, 2)]
        initstate = (state64[0] << 64) | state64[1]
        initseq = (state64[2] << 64) | state64[3]
        self._inc = ((initseq << 1) | 1) & _MASK128
        # pcg_setseq_128_srandom_r: from state 0, step (giving inc), add initstate, step.
        self._state = ((self._inc + initstate) * self._MULTIPLIER + self._inc) & _MASK128
        self._spare32: int | None = None  # PCG64 hands out the high half of a split draw next

    def _uint64s(self, count: int) -> list[int]:
        """The next ``count`` 64-bit outputs (XSL-RR of the advanced 128-bit state)."""
        state, inc, multiplier = self._state, self._inc, self._MULTIPLIER
        mask64, mask128 = _MASK64, _MASK128  # locals: this loop is the generator's hot spot
        out = [0] * count
        for index in range(count):
            state = (state * multiplier + inc) & mask128
            value = ((state >> 64) ^ state) & mask64
            out[index] = ((value | (value << 64)) >> (state >> 122)) & mask64  # rotate right
        self._state = state
        return out

    def _uint32s(self, count: int) -> list[int]:
        """The next ``count`` 32-bit draws: the low half of a 64-bit output, then its high
        half (kept for the next call, as PCG64's ``next_uint32`` does)."""
        head: list[int] = []
        if count > 0 and self._spare32 is not None:
            head, self._spare32 = [self._spare32], None
        pairs = self._uint64s((count - len(head) + 1) // 2)
        out = [0] * (2 * len(pairs))
        out[0::2] = [value & _MASK32 for value in pairs]
        out[1::2] = [value >> 32 for value in pairs]
        if len(head) + len(out) > count:  # odd: keep the last high half for next time
            self._spare32 = out.pop()
        return head + out

    def integers(self, low: int, high: int, count: int) -> list[int]:
        """``count`` draws from ``[low, high)`` (Lemire's method on 32-bit draws)."""
        bound = high - low  # every range used here is below 2**32 - 1
        if bound == 1:
            return [low] * count  # NumPy draws nothing for a one-value range
        threshold = (_MASK32 - (bound - 1)) % bound
        out: list[int] = []
        while len(out) < count:
            # A rejected draw is replaced by the next one, so the values are simply the
            # accepted draws in order.
            products = [draw * bound for draw in self._uint32s(count - len(out))]
            out += [low + (p >> 32) for p in products if (p & _MASK32) >= threshold]
        return out

    def integer(self, low: int, high: int) -> int:
        return self.integers(low, high, 1)[0]

    def random(self, count: int) -> list[float]:
        """``count`` doubles in [0, 1) from the top 53 bits of 64-bit draws."""
        scale = 1.0 / 9007199254740992.0
        return [(value >> 11) * scale for value in self._uint64s(count)]

    def choice(self, cdf: Sequence[float], count: int) -> list[int]:
        """``choice(len(p), count, p=p)`` given ``cdf = cumulative(p)``."""
        return [bisect.bisect_right(cdf, sample) for sample in self.random(count)]


def _numpy_sum(values: Sequence[float]) -> float:
    """``np.sum`` of a short float64 array, rounded as NumPy rounds it: eight running sums
    (its pairwise sum below 128 items), then the leftover items one by one."""
    if len(values) > 128:
        raise ValueError("only short weight lists are supported")
    if len(values) < 8:
        total = 0.0
        for value in values:
            total += value
        return total
    sums = list(values[:8])
    stop = len(values) - len(values) % 8
    for start in range(8, stop, 8):
        for lane in range(8):
            sums[lane] += values[start + lane]
    total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) +
                                                          (sums[6] + sums[7]))
    for value in values[stop:]:
        total += value
    return total


def _cdf(weights: Iterable[float]) -> list[float]:
    """NumPy's ``choice`` table: ``p = w / w.sum()``, ``cdf = p.cumsum() / cdf[-1]``."""
    values = [float(w) for w in weights]
    total = _numpy_sum(values)
    running, cdf = 0.0, []
    for value in values:
        running += value / total
        cdf.append(running)
    last = cdf[-1]
    return [value / last for value in cdf]


# -- the rows -------------------------------------------------------------------------


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
    rng = Random([seed, 0xC0FFEE])
    pool = []
    for index in range(NOTES_POOL):
        kind = index % 8
        word = _WORDS[rng.integer(0, len(_WORDS))]
        shift = _SHIFTS[rng.integer(0, len(_SHIFTS))]
        day = _DAYS[rng.integer(0, len(_DAYS))]
        quote = _QUOTES[rng.integer(0, len(_QUOTES))]
        if kind < 4:
            text = ""
        elif kind == 4:
            text = f"Prefers {shift} shifts, from {day}"
        elif kind == 5:
            text = f'Client: "{quote}", {word}'
        elif kind == 6:
            text = f"Badge {rng.integer(100, 9999)}, 6'2\", {word}"
        else:
            text = f"{word.capitalize()}, {shift} shift only"
        if rng.random(1)[0] < 0.01:
            text += f"\nCall back {day}"
        pool.append(_csv_field(text))
    return pool


class _Block:
    """Everything that does not change between blocks, built once per seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.first_initial = [_ascii(n)[0] for n in FIRST_NAMES]
        self.last_lower = [_ascii(n) for n in LAST_NAMES]
        self.role_cdf = _cdf(ROLE_WEIGHTS)
        self.state_cdf = _cdf(STATE_WEIGHTS)
        self.zip_base = [ZIP_FIRST_DIGIT[s] * 10_000 for s in STATES]
        self.notes = _notes_pool(seed)
        self.dates = [(_EPOCH + timedelta(days=d)).isoformat() for d in range(9496)]

    def render(self, index: int, rows: int = BLOCK_ROWS) -> bytes:
        """The first ``rows`` rows of block ``index`` (rows ``index*BLOCK_ROWS+1 …``) as CSV
        bytes, no header.

        The draws are made for the whole block, column by column, in the order the NumPy
        version made them; only the rows asked for are formatted.
        """
        rng = Random([self.seed, index])
        n = BLOCK_ROWS
        first_i = rng.integers(0, len(FIRST_NAMES), n)
        last_i = rng.integers(0, len(LAST_NAMES), n)
        role_i = rng.choice(self.role_cdf, n)
        state_i = rng.choice(self.state_cdf, n)
        zip_offsets = rng.integers(0, 10_000, n)
        cents = rng.integers(1500, 9500, n)
        years = rng.integers(0, 41, n)
        days = rng.integers(0, 9496, n)  # 2000-01-01 … 2025-12-31
        active = rng.random(n)
        score_tenths = rng.integers(0, 1001, n)
        score_empty = rng.random(n)
        notes_i = rng.integers(0, len(self.notes), n)

        first, last, roles, states = FIRST_NAMES, LAST_NAMES, ROLES, STATES
        initials, lowers, zip_base = self.first_initial, self.last_lower, self.zip_base
        dates, notes = self.dates, self.notes
        lines = []
        row_id = index * n
        for row in range(rows):
            row_id += 1
            fi, li, si, c = first_i[row], last_i[row], state_i[row], cents[row]
            score = "" if score_empty[row] < 0.07 else f"{score_tenths[row] / 10:.1f}"
            lines.append(
                f"{row_id},{first[fi]},{last[li]},{initials[fi]}{lowers[li]}{row_id}@example.com,"
                f"{roles[role_i[row]]},{states[si]},{zip_base[si] + zip_offsets[row]:05d},"
                f"{c // 100}.{c % 100:02d},{years[row]},{dates[days[row]]},"
                f"{'true' if active[row] < 0.82 else 'false'},{score},{notes[notes_i[row]]}\n"
            )
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
        remaining = BLOCK_ROWS
        if rows is not None:
            remaining = rows - index * BLOCK_ROWS
            if remaining <= 0:
                return
        elif target_bytes is not None and written_bytes >= target_bytes:
            return
        data = block.render(index, min(remaining, BLOCK_ROWS))
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
