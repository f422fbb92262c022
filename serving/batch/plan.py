"""Which input rows get scored: row checks, duplicate ids, parts, and the job's fingerprint.

Every run walks the whole input in the same order and makes the same decisions (the first valid
row of an id wins; later ones are duplicates), so a resumed job agrees with the run it resumes.
Rows of finished parts are only read for their ids, never scored again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from khabar.serving.batch.io import InputRow, read_rows

DEFAULT_MAX_CHARS = 100_000
FINGERPRINT_VERSION = 1


@dataclass
class Part:
    """Consecutive input rows: the valid ones to score and the error rows.

    ``valid`` holds ``(id, text, source, row)``; ``errors`` holds ready error rows.
    """

    index: int
    size: int
    valid: list[tuple[Any, str, str, int]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)


def row_problem(row: InputRow, max_chars: int) -> str | None:
    """Why a row cannot be scored, or None when it can (duplicates are checked elsewhere)."""
    if row.problem:
        return row.problem
    if row.id is None or (isinstance(row.id, str) and not row.id.strip()):
        return "no id"
    if isinstance(row.id, bool) or not isinstance(row.id, (str, int)):
        return f"id must be a string or an integer, not {type(row.id).__name__}"
    if row.text is None:
        return "no text"
    if not isinstance(row.text, str):
        return f"text is not a string ({type(row.text).__name__})"
    if not row.text.strip():
        return "no text (empty)"
    if len(row.text) > max_chars:
        return f"text is longer than the limit of {max_chars:,} characters ({len(row.text):,})"
    return None


class InputPlan:
    """Walks the input files once, cutting rows into parts; keeps counts as it goes."""

    def __init__(self, files: list[Path], root: Path, *, id_field: str, text_field: str,
                 max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.files = files
        self.root = root
        self.id_field = id_field
        self.text_field = text_field
        self.max_chars = max_chars
        self.rows = 0
        self.valid = 0
        self.errors = 0
        self.n_parts = 0
        self._all_int = True

    @property
    def int_ids(self) -> bool:
        """True when every valid id is an integer (Parquet output then keeps them as int64)."""
        return self.valid > 0 and self._all_int

    def _rows(self) -> Iterator[InputRow]:
        for path in self.files:
            name = path.name if path == self.root else str(path.relative_to(self.root))
            yield from read_rows(path, self.id_field, self.text_field, name)

    def parts(self, part_size: int) -> Iterator[Part]:
        """Yield the input as parts of ``part_size`` rows (the last may be shorter)."""
        first_seen: dict[str, str] = {}
        part = Part(0, 0)
        for row in self._rows():
            problem = row_problem(row, self.max_chars)
            where = f"{row.source}:{row.row}"
            if problem is None:
                key = str(row.id)
                if key in first_seen:
                    problem = f"duplicate id (first seen at {first_seen[key]})"
                else:
                    first_seen[key] = where
            if problem is None:
                part.valid.append((row.id, row.text, row.source, row.row))
                self.valid += 1
                self._all_int &= isinstance(row.id, int)
            else:
                part.errors.append({"id": _jsonable(row.id), "reason": problem, "source": row.source, "row": row.row})
                self.errors += 1
            part.size += 1
            self.rows += 1
            if part.size == part_size:
                yield part
                self.n_parts += 1
                part = Part(part.index + 1, 0)
        if part.size:
            yield part
            self.n_parts += 1


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def fingerprint(*, model: str, tasks: list[str], targets: list[str], text_field: str,
                id_field: str, max_chars: int, files: list[Path], actors: list[str] = ()) -> dict:
    """What makes two runs the same job: anything that changes which rows or labels come out.

    Batch size and engine are left out on purpose: they change speed, not labels, so a job
    started locally may be finished on Ray. Inputs are identified by path, size and mtime
    (hashing a million articles on every resume would cost minutes).
    """
    inputs = []
    for path in files:
        st = path.stat()
        inputs.append({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    fp = {"version": FINGERPRINT_VERSION, "model": model, "tasks": list(tasks), "targets": list(targets),
          "text_field": text_field, "id_field": id_field, "max_chars": max_chars, "inputs": inputs}
    if actors:  # only when asked for, so jobs started before actors existed still resume
        fp["actors"] = list(actors)
    return fp
