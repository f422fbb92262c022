"""Rows of data files: JSON Lines, CSV and Parquet, streamed with 1-based numbers.

One concern: turning a file's bytes into rows, for every reader of data files (training's
labelled data, batch jobs' inputs and outputs). A row that cannot be parsed (bytes that are not
UTF-8, broken JSON, a CSV record with the wrong number of cells) comes back as a :class:`Row`
with a ``problem`` rather than raising, so that each caller keeps its own policy: training stops
at the line, a batch job writes an error row and reads on. Only a file that cannot be read as its
format at all (a JSON array, no CSV header, a broken Parquet file) raises :class:`FormatError`.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Articles easily pass csv's default 128 KiB field limit. The limit is process-wide (csv has no
# other kind), so it is set on import for every CSV reader in the process, and again before each
# read; 2**31 - 1 is the largest that every platform's C long holds.
FIELD_SIZE_LIMIT = 2**31 - 1
csv.field_size_limit(FIELD_SIZE_LIMIT)

_BOM = b"\xef\xbb\xbf"


class FormatError(ValueError):
    """The file cannot be read as its format at all; ``line`` is where that showed, if anywhere."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


@dataclass(frozen=True)
class Row:
    """One row: its ``values`` by key or column, or the ``problem`` that kept it from parsing.

    ``number`` is 1-based: the line of a JSON Lines row, the first line of a CSV record (a quoted
    cell can span lines), the row of a Parquet file.
    """

    number: int
    values: dict[str, Any] | None
    problem: str | None = None


def numbered_lines(raw: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Lines numbered from 1, without their ``\\n`` or ``\\r\\n`` and without a leading BOM.

    ``raw`` is a binary file or anything else that yields its lines.
    """
    for number, line in enumerate(raw, 1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        yield number, line


def decode_line(line: bytes) -> tuple[str, str | None]:
    """The line as text, and the problem when it is not UTF-8 (the text then holds U+FFFD for
    the bad bytes, for readers that must read on past the line to find where a record ends)."""
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as err:
        bad = line[err.start:err.start + 1].hex()
        return line.decode("utf-8", "replace"), (
            f"invalid UTF-8 (byte 0x{bad} at byte {err.start + 1} of the line); "
            "re-save the file as UTF-8")


def jsonl_rows(raw: Iterable[bytes]) -> Iterator[Row]:
    """One JSON object a line; blank lines are skipped (but counted in the numbers).

    Raises :class:`FormatError` when the first line that is not blank opens a JSON array.
    """
    first = True
    for number, line in numbered_lines(raw):
        if not line.strip():
            continue
        if first and line.lstrip().startswith(b"["):
            raise FormatError(number, "a JSON array, not JSON Lines; write one object per line")
        first = False
        text, problem = decode_line(line)
        if problem is None:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                problem = f"invalid JSON: {err.msg} (column {err.colno})"
            else:
                if isinstance(obj, dict):
                    yield Row(number, obj)
                    continue
                problem = f"expected a JSON object, got {type(obj).__name__}"
        yield Row(number, None, problem)


def csv_rows(raw: Iterable[bytes], delimiter: str = ",") -> tuple[list[str], Iterator[Row]]:
    """The header (names stripped of blanks) and the records as ``{column: cell}``.

    Empty records are skipped. The header is read at once, so a file without a readable one
    raises :class:`FormatError` here; the records are read as they are asked for.
    """
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    bad: dict[int, str] = {}  # line -> why it is not UTF-8, until its record is reached

    def text_lines() -> Iterator[str]:
        for number, line in numbered_lines(raw):
            text, problem = decode_line(line)
            if problem is not None:
                bad[number] = problem
            yield text + "\n"

    reader = csv.reader(text_lines(), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except (StopIteration, csv.Error) as err:
        raise FormatError(1, f"no readable CSV header ({err or 'the file is empty'})") from None
    if bad:
        raise FormatError(min(bad), bad[min(bad)])

    def records() -> Iterator[Row]:
        end = reader.line_num
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # the reader starts afresh on the next line
                end = reader.line_num
                yield Row(end, None, f"unreadable CSV ({err})")
                continue
            end = reader.line_num
            problems = [(n, bad.pop(n)) for n in range(start, end + 1) if n in bad]
            if problems:
                line, problem = problems[0]
                yield Row(line, None, problem)
            elif not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            elif len(cells) != len(header):
                yield Row(start, None, f"expected {len(header)} columns like the header, got "
                                       f"{len(cells)}; quote cells holding the delimiter")
            else:
                yield Row(start, dict(zip(header, cells)))

    return header, records()


def parquet_rows(source: Path | BinaryIO, columns: list[str] | None = None,
                 batch_size: int = 1024) -> tuple[list[str], Iterator[Row]]:
    """The file's column names and its rows (of ``columns`` only, when given), a batch at a time.

    Raises :class:`FormatError` when the file is not Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as err:
        raise FormatError(None, f"unreadable Parquet ({err})") from None

    def records() -> Iterator[Row]:
        number = 0
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            for values in batch.to_pylist():
                number += 1
                yield Row(number, values)

    return pf.schema_arrow.names, records()
