"""How flight_lake reads a CSV file: the Arrow options, the type-inference policy, and
where in the file an error sits.

The policy (docs/SCHEMA_INFERENCE.md): Arrow infers each column's type from the first
``ingest.sample_bytes`` of the file; our rules then turn every ambiguous column into a
string (integers with leading zeros, columns with no values in the sample, integers too
large for int64, anything Arrow could only read as binary). Integer columns are read as
text and cast by us, batch by batch, so a leading zero or a non-integer that appears
after the sample is caught too. The ingest service falls back to string for any column
that stops converting later in the file; nothing here ever drops a row.

The sample also says how to read the rest: whether values hold line breaks (then Arrow's
chunker must follow quotes, ``newlines_in_values``; else the plain chunker, whose
out-of-sync error makes the ingest read again the slow way) and how long a row is (blocks
hold at least ``BLOCK_ROWS`` rows, so a file of 10,000 columns is not read 17 rows at a
time).
"""

from __future__ import annotations

import codecs
import csv
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flight_lake.errors import Conflict, InvalidInput, LakeError

LEADING_ZERO = r"^[+-]?0[0-9]"
PLAIN_INTEGER = re.compile(r"^-?[0-9]+$")
LEADING_ZERO_TEXT = re.compile(LEADING_ZERO)
DIGITS = r"^-?[0-9]+$"
NUMBER_LIKE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to ([^:]+): (.*)", re.S)
_SCAN_BYTES = 1 << 20
MAX_NAME_LENGTH = 255  # characters in a column name
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_BLOCK_BYTES = 64 << 20  # Arrow parses whole rows per block: the longest row we accept
BLOCK_BYTES = 1 << 20  # Arrow's parse unit after the sample (fastest, least memory)...
BLOCK_ROWS = 512  # ...unless rows are so long that it would hold fewer rows than this...
WIDE_BLOCK_BYTES = 16 << 20  # ...then up to this (per-batch costs grow with the columns)
# Opens the CSV from its start: a file object (closed once its Arrow reader is done, which
# frees Arrow's read-ahead thread if the file makes it wait: spool.SpoolReader does)
Source = Callable[[], Any]


@dataclass(frozen=True)
class Defaulted:
    """A column the policy made a string, and why (logged as ``column_defaulted_to_string``)."""

    column: str
    reason: str


@dataclass(frozen=True)
class CsvPlan:
    """The final column names and types, and which integer columns we check as text."""

    names: list[str]
    types: list[pa.DataType]
    checked_ints: frozenset[int] = frozenset()
    fixed: bool = False  # types come from an existing dataset: no fallback to string
    defaulted: list[Defaulted] = field(default_factory=list)
    block_bytes: int = 0  # the Arrow block to read with (holds whole rows, BLOCK_ROWS of them)
    multiline: bool = False  # values hold line breaks: the chunker must follow quotes

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t) for n, t in zip(self.names, self.types, strict=True)])

    def for_append(self, current: pa.Schema) -> CsvPlan:
        """Appending a CSV with the dataset's own columns reads it with the dataset's types,
        and its int64 columns as text checked by ``cast_integers``: exactly the rule create
        infers with (Arrow's own conversion would take ``007``, `` 8`` or ``0x10``)."""
        if current.names != self.names or not all(f.nullable for f in current):
            return self
        checked = frozenset(index for index, kind in enumerate(current.types)
                            if pa.types.is_int64(kind))
        return CsvPlan(list(current.names), list(current.types), checked, fixed=True,
                       block_bytes=self.block_bytes, multiline=self.multiline)

    def read_types(self) -> dict[str, pa.DataType]:
        """What Arrow converts each column to: checked integers stay text until ``finish``."""
        return {name: pa.string() if index in self.checked_ints else kind
                for index, (name, kind) in enumerate(zip(self.names, self.types, strict=True))}

    def fall_back(self, columns: dict[int, str]) -> CsvPlan:
        """This plan with ``columns`` (index: reason) read as strings, reasons in ``defaulted``."""
        types, defaulted = list(self.types), list(self.defaulted)
        for index, reason in sorted(columns.items()):
            if self.fixed or pa.types.is_string(types[index]):
                raise InvalidInput(f"column {self.names[index]!r}: {reason}")
            types[index] = pa.string()
            defaulted.append(Defaulted(self.names[index], reason))
        return replace(self, types=types, checked_ints=self.checked_ints - set(columns),
                       defaulted=defaulted)

    def finish(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Cast the checked integer columns; raise ``ColumnFallback`` naming those that fail.

        All of them are cast as one array (a few calls per batch, not per column: a file of
        10,000 integer columns spent minutes here); only if that fails are they cast one by
        one, to name the culprits."""
        if not self.checked_ints:
            return batch
        columns = list(batch.columns)
        checked = sorted(self.checked_ints)
        if len(checked) > 1 and batch.num_rows:
            together, _ = cast_integers(pa.concat_arrays([columns[i] for i in checked]))
            if together is not None:
                rows = batch.num_rows
                for position, index in enumerate(checked):
                    columns[index] = together.slice(position * rows, rows)
                return pa.RecordBatch.from_arrays(columns, schema=self.schema)
        failed: dict[int, str] = {}
        for index in self.checked_ints:
            integers, problem = cast_integers(columns[index])
            if integers is None and self.fixed:
                row = first_non_integer(columns[index])
                raise NotAnInteger(self.names[index], row, columns[index][row].as_py(),
                                   str(problem))
            if integers is None:
                failed[index] = f"{problem} after the sample"
            else:
                columns[index] = integers
        if failed:
            raise ColumnFallback(failed)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


class RowTooLong(Exception):
    """A row did not fit in one Arrow block: read again with larger blocks."""


class NotAnInteger(Exception):
    """An appended value that the inference rules would not read as an integer."""

    def __init__(self, column: str, row: int, value: str | None, problem: str) -> None:
        super().__init__(column, row, value, problem)
        self.column, self.row, self.value, self.problem = column, row, value, problem


class ColumnFallback(Exception):
    """Columns (by index, with the reason) that must be re-read as strings."""

    def __init__(self, columns: dict[int, str]) -> None:
        super().__init__(columns)
        self.columns = columns


class RowRecorder:
    """Arrow's ``invalid_row_handler``: remember the first bad row, then stop the read."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.actual: int | None = None
        self.text: str | None = None

    def __call__(self, row: Any) -> str:
        if self.expected is None:
            self.expected, self.actual = row.expected_columns, row.actual_columns
            self.text = row.text
        return "error"


def read_options(
    block_size: int, names: list[str] | None = None, *, threads: bool = True
) -> pacsv.ReadOptions:
    """With ``names`` the header row is skipped and ``names`` used instead (renamed columns)."""
    if names is None:
        return pacsv.ReadOptions(block_size=block_size, use_threads=threads)
    return pacsv.ReadOptions(block_size=block_size, use_threads=threads, column_names=names,
                             skip_rows=1)


def parse_options(recorder: RowRecorder, multiline: bool = True) -> pacsv.ParseOptions:
    """``multiline``: values may hold line breaks, so the block chunker must follow quotes
    (``newlines_in_values``); without it Arrow cuts blocks at any line break and reports a
    cut inside a quoted value as the parser getting out of sync with the chunker."""
    return pacsv.ParseOptions(newlines_in_values=multiline, invalid_row_handler=recorder)


def convert_options(types: dict[str, pa.DataType] | None = None) -> pacsv.ConvertOptions:
    # Only an unquoted empty field is null (as in PostgreSQL's CSV): "NA", "null" or
    # "N/A" are text, so a late "NA" in a number column falls back instead of vanishing.
    return pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                quoted_strings_can_be_null=False)


def header_names(raw: list[str]) -> list[str]:
    """Empty names become ``column_<n>``; duplicates (ignoring case, as SQL does), names
    with control characters (NUL…: not text) and names over ``MAX_NAME_LENGTH`` are refused."""
    for position, name in enumerate(raw, start=1):
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(f"line 1: column {position}'s name is {len(name)} characters "
                               f"long (at most {MAX_NAME_LENGTH}); is this a CSV header?",
                               line=1)
        if _CONTROL.search(name):
            raise InvalidInput(f"line 1: column {position}'s name {name[:40]!r} has control "
                               "characters; is this a CSV header?", line=1)
    names = [name if name.strip() else f"column_{position}"
             for position, name in enumerate(raw, start=1)]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        first = seen.setdefault(name.lower(), position)
        if first != position:
            raise InvalidInput(f"line 1: duplicate column name {name!r} in the header "
                               f"(columns {first} and {position})", line=1)
    return names


def infer(source: Source, sample_bytes: int, recorder: RowRecorder) -> CsvPlan:
    """Infer the plan from the head of the file (see the module docstring); ``source()``
    opens the file from its start (called a few times; only the head is read)."""
    block = sample_bytes
    while True:
        try:
            # Single-threaded: a threaded reader would read ahead past the sample we want.
            with source() as handle, pacsv.open_csv(
                    handle, read_options=read_options(block, threads=False),
                    parse_options=parse_options(recorder),
                    convert_options=convert_options()) as typed:
                inferred = typed.schema
            break
        except pa.ArrowInvalid as exc:
            block = larger_block(exc, block)
    names = header_names(inferred.names)
    as_text = {name: pa.string() for name in names}
    with source() as handle, pacsv.open_csv(
            handle, read_options=read_options(block, names, threads=False),
            parse_options=parse_options(recorder),
            convert_options=convert_options(as_text)) as text:
        try:
            sample: pa.RecordBatch | None = text.read_next_batch()
        except StopIteration:
            sample = None
    types: list[pa.DataType] = []
    checked: set[int] = set()
    defaulted: list[Defaulted] = []
    plain = _plain_integer_columns(inferred, sample)
    for index, (name, kind) in enumerate(zip(names, inferred.types, strict=True)):
        values = sample.column(index) if sample is not None else pa.array([], pa.string())
        reason = None if index in plain else _ambiguity(kind, values)
        if reason is not None:
            defaulted.append(Defaulted(name, reason))
            kind = pa.string()
        elif pa.types.is_integer(kind):
            checked.add(index)
        types.append(kind)
    return CsvPlan(names, types, frozenset(checked), defaulted=defaulted,
                   block_bytes=_pass_block(block, sample), multiline=_has_line_breaks(sample))


def _plain_integer_columns(inferred: pa.Schema, sample: pa.RecordBatch | None) -> set[int]:
    """The integer columns whose sample texts are all plain integers, checked as one array
    when they all are (one cast per file, not one per column); else none (each is judged)."""
    indices = [index for index, kind in enumerate(inferred.types) if pa.types.is_integer(kind)]
    if sample is None or len(indices) < 2:
        return set()
    integers, _ = cast_integers(pa.concat_arrays([sample.column(i) for i in indices]))
    return set(indices) if integers is not None else set()


def _pass_block(smallest: int, sample: pa.RecordBatch | None) -> int:
    """The block the whole file is read with (the ingest reads with ``BLOCK_BYTES`` at
    least): at least ``smallest`` (it held a whole row), and large enough for
    ``BLOCK_ROWS`` of the sample's rows, up to ``WIDE_BLOCK_BYTES``."""
    if sample is None or sample.num_rows == 0:
        return smallest
    row_bytes = sample.nbytes // sample.num_rows + 1
    return max(smallest, min(row_bytes * BLOCK_ROWS, WIDE_BLOCK_BYTES))


def _has_line_breaks(sample: pa.RecordBatch | None) -> bool:
    """Whether any value of the sample (read as text) holds a line break."""
    if sample is None or sample.num_rows == 0 or sample.num_columns == 0:
        return False
    text = pa.concat_arrays(sample.columns)  # all read as string
    return bool(pc.any(pc.match_substring_regex(text, "[\\r\\n]")).as_py())


def larger_block(exc: pa.ArrowInvalid, block: int) -> int:
    """The next block size to try if ``exc`` says a row straddles two blocks, else re-raise."""
    if "straddl" not in str(exc):
        raise exc
    return grow_block(block)


def grow_block(block: int) -> int:
    if block >= MAX_BLOCK_BYTES:
        raise InvalidInput(f"a CSV row is longer than {MAX_BLOCK_BYTES} bytes")
    return block * 4


def _ambiguity(kind: pa.DataType, values: pa.Array) -> str | None:
    """Why a column inferred as ``kind`` from these sample texts must be a string, if it must."""
    if pa.types.is_null(kind):
        return "no values in the sample"
    if pa.types.is_binary(kind):
        return "not valid UTF-8 in the sample"
    if pa.types.is_integer(kind):
        return cast_integers(values)[1]
    if pa.types.is_floating(kind) and _all_match(values, DIGITS):
        return "integers too large for int64"
    if pa.types.is_string(kind) and _any_match(values, NUMBER_LIKE) and \
            not _all_match(values, NUMBER_LIKE):
        return "mixed numbers and text"
    return None


def cast_integers(values: pa.Array) -> tuple[pa.Array | None, str | None]:
    """``(int64 array, None)`` if every non-null text is a plain integer (``-?(0|[1-9][0-9]*)``)
    that fits int64, else ``(None, what is wrong)``.

    Arrow's cast refuses ``+5`` and `` 7`` but takes ``007`` and ``0x10``, so it is paired with
    a check for a leading ``0``; both are a few times cheaper than a regular expression.
    """
    length = pc.binary_length(values)
    leading_zero = pc.or_(pc.and_(pc.starts_with(values, "0"), pc.greater(length, 1)),
                          pc.and_(pc.starts_with(values, "-0"), pc.greater(length, 2)))
    if not pc.any(leading_zero).as_py():
        try:
            return pc.cast(values, pa.int64()), None
        except pa.ArrowInvalid:
            pass
    if _any_match(values, LEADING_ZERO):
        return None, "leading zeros"
    if _all_match(values, DIGITS):
        return None, "integers too large for int64"
    return None, "values that are not plain integers"


def first_non_integer(values: pa.Array) -> int:
    """The index of the first value ``cast_integers`` refuses (0 if none stands out)."""
    for index, value in enumerate(values.to_pylist()):
        if value is None:
            continue
        if not PLAIN_INTEGER.match(value) or LEADING_ZERO_TEXT.match(value):
            return index
        if not -(2**63) <= int(value) < 2**63:
            return index
    return 0


def line_of_record(path: str, row: int) -> int | None:
    """The first line of data record ``row`` (0-based, after the header; blank lines, which
    Arrow skips, are skipped), counting lines inside quoted values."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        end_of_previous, seen = 0, -1  # the header is record -1
        try:
            for record in reader:
                start, end_of_previous = end_of_previous + 1, reader.line_num
                if not record:
                    continue
                if seen == row:
                    return start
                seen += 1
        except csv.Error:
            return None
    return None


def _all_match(values: pa.Array, pattern: str) -> bool:
    # all() over no non-null value is null: "all of nothing" is not evidence of a type.
    return pc.all(pc.match_substring_regex(values, pattern)).as_py() is not False


def _any_match(values: pa.Array, pattern: str) -> bool:
    return bool(pc.any(pc.match_substring_regex(values, pattern)).as_py())


def conversion_failure(exc: pa.ArrowInvalid) -> tuple[int, str, str] | None:
    """``(column index, target type, detail)`` if ``exc`` is a CSV value-conversion error."""
    match = _CONVERSION_ERROR.search(str(exc))
    if match is None:
        return None
    return int(match.group(1)), match.group(2), match.group(3)


def failure_meaning(exc: pa.ArrowInvalid, path: str, recorder: RowRecorder, plan: CsvPlan,
                    dataset: str) -> Exception:
    """What an Arrow error while reading the whole file means: a column to re-read as text
    (``ColumnFallback``), appended values that do not fit the dataset, or bad input."""
    if "straddl" in str(exc) and recorder.expected is None:
        return RowTooLong()
    failure = conversion_failure(exc)
    if recorder.expected is not None or failure is None or failure[1] == "string":
        return input_error(exc, path, recorder)
    index, target, detail = failure
    if plan.fixed:
        value = re.search(r"invalid value '(.*)'$", detail)
        line = line_of_value(path, index, value.group(1)) if value else None
        return Conflict(f"{f'line {line}: ' if line else ''}column {plan.names[index]!r} "
                        f"must be {target}, like the rest of {dataset} ({detail})", line=line)
    return ColumnFallback({index: f"{detail[:80]} after the sample"})


def fixed_plan(plan: CsvPlan, expected: pa.Schema) -> CsvPlan:
    """``plan`` made to read exactly ``expected``'s columns (an append, or a later file of a
    transaction); ``Conflict`` naming the header line if the columns differ."""
    if plan.names != expected.names:
        raise Conflict(f"line 1: the header ({', '.join(plan.names)}) differs from the "
                       f"columns already fixed ({', '.join(expected.names)})", line=1)
    fixed = plan.for_append(expected)
    if not fixed.fixed:
        raise Conflict("line 1: the columns already fixed are NOT NULL, which CSV cannot "
                       "promise", line=1)
    return fixed


def line_of_value(path: str, index: int, value: str) -> int | None:
    """The first line of the first data record whose field ``index`` is ``value``."""
    return _first_record_line(
        path, lambda record: index < len(record) and record[index] == value)


def input_error(exc: Exception, path: str, recorder: RowRecorder) -> LakeError:
    """Turn an Arrow CSV failure into ``InvalidInput`` naming the line of the file."""
    message = str(exc)
    if recorder.expected is not None:
        line = line_of_bad_row(path, recorder.expected) or line_of_text(path, recorder.text)
        return InvalidInput(f"line {line}: expected {recorder.expected} fields, found "
                            f"{recorder.actual}", line=line)
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in message:
        offset = offset_of_bad_utf8(path)
        line = line_at(path, offset) if offset is not None else None
        return InvalidInput(f"line {line}: text is not valid UTF-8 (byte {offset})", line=line)
    if "Empty CSV file" in message:
        return InvalidInput("line 1: empty CSV file (no header row)", line=1)
    return InvalidInput(f"cannot parse CSV: {message}")


def line_of_bad_row(path: str, expected: int) -> int | None:
    """The first line of the first record whose field count is not ``expected``."""
    return _first_record_line(path, lambda record: len(record) != expected)


def _first_record_line(path: str, matches: Callable[[list[str]], bool]) -> int | None:
    """The first line of the first data record (after the header) that ``matches``;
    None if none does or the csv module cannot read the file."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        end_of_previous, header_seen = 0, False
        try:
            for record in reader:
                start, end_of_previous = end_of_previous + 1, reader.line_num
                if not record:  # a blank line: Arrow skips it too
                    continue
                if header_seen and matches(record):
                    return start
                header_seen = True
        except csv.Error:
            return None
    return None


def line_of_text(path: str, text: str | None) -> int | None:
    """The line where ``text`` first occurs (used when the csv module disagrees with Arrow)."""
    if not text:
        return None
    needle, offset, tail = text.encode(), 0, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_SCAN_BYTES):
            window = tail + chunk
            found = window.find(needle)
            if found >= 0:
                return line_at(path, offset - len(tail) + found)
            tail = window[-len(needle):]
            offset += len(chunk)
    return None


def offset_of_bad_utf8(path: str) -> int | None:
    """The byte offset of the first byte that is not valid UTF-8, or ``None``."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(_SCAN_BYTES)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:  # exc.object is the decoder's pending bytes + chunk
                return offset - (len(exc.object) - len(chunk)) + exc.start
            if not chunk:
                return None
            offset += len(chunk)


def line_at(path: str, offset: int) -> int:
    """The 1-based physical line holding byte ``offset`` (LF, CRLF or a lone CR end a line)."""
    line, remaining, after_cr = 1, offset, False
    with open(path, "rb") as handle:
        while remaining > 0 and (chunk := handle.read(min(remaining, _SCAN_BYTES))):
            remaining -= len(chunk)
            crlf = chunk.count(b"\r\n") + (1 if after_cr and chunk.startswith(b"\n") else 0)
            line += chunk.count(b"\n") + chunk.count(b"\r") - crlf
            after_cr = chunk.endswith(b"\r")
    return line


def check_quotes_closed(path: str, last: pa.RecordBatch | None) -> None:
    """Refuse a file that ends inside a quoted field, naming the line the quote opened on.

    Arrow reads an unclosed quote as one value running to the end of the file, silently.
    Such a value is the last of the last row and ends with the file's final line break; a
    value that legitimately ends with a line break is closed by a quote right after it. In
    RFC 4180 a quoted field's raw text ends with an even run of quotes (escapes) plus the
    closing one, so an odd run of quotes before the final line break means closed.
    """
    if last is None or last.num_rows == 0 or last.num_columns == 0:
        return
    column = last.column(last.num_columns - 1)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return
    value = column[last.num_rows - 1].as_py()
    if not isinstance(value, str) or not value.endswith(("\n", "\r")):
        return
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read().rstrip(b"\r\n")
    quotes = len(tail) - len(tail.rstrip(b'"'))
    if quotes % 2 == 1:
        return
    line = _newlines(path) - value.count("\n") + 1
    raise InvalidInput(
        f"line {line}: a quoted field opens here and is never closed (it would swallow "
        "the rest of the file); close it with \" or escape a quote inside as \"\"",
        line=line,
    )


_TAIL_BYTES = 4096


def _newlines(path: str) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_SCAN_BYTES):
            count += chunk.count(b"\n")
    return count
