"""Reading inputs and writing outputs of batch jobs: JSON Lines, CSV, Parquet, folders of files.

Inputs are streamed row by row by :mod:`khabar.models.rows` (a million articles never sit in
memory); a row it cannot parse becomes an error row here, never a crash. Each row keeps where it
came from (file and row number) so that error rows can point the user at it. Outputs are written
from the job's parts, which are always JSON Lines, in the format the output's extension names:
CSV cells hold JSON for nested values; Parquet gets a typed nested schema.
"""
from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from khabar.models.rows import FormatError, Row, csv_rows, jsonl_rows, parquet_rows

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}
RESULT_KEYS = ("topic", "stance", "entities", "warnings", "model", "actors")
_PEEK_ROWS = 100


class InputError(ValueError):
    """The input cannot be read as asked (unknown format, missing column, empty folder)."""


@dataclass
class InputRow:
    """One input row: its id and text as found (any type), and where it came from."""

    id: Any
    text: Any
    source: str
    row: int  # 1-based: the line in JSON Lines, the record in CSV and Parquet
    problem: str | None = None  # set when the row itself cannot be parsed


def file_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet``, from the file's extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown format {path.suffix!r}; use one of {sorted(FORMATS)}")
    return fmt


def list_inputs(path: Path) -> list[Path]:
    """The files of an input: the file itself, or every data file under a folder, sorted."""
    if path.is_file():
        file_format(path)
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder")
    # Hidden and underscore files are bookkeeping of other tools (_SUCCESS, .crc): not data.
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS
                   and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    if not files:
        raise InputError(f"{path}: folder has no {'/'.join(sorted(FORMATS))} files")
    return files


def count_rows(path: Path) -> int:
    """Rows in one input file (a cheap pass; used for the progress bar's total)."""
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh, _readable(path):
        if fmt == "csv":
            return sum(1 for _ in csv_rows(fh)[1])
        return sum(1 for line in fh if line.strip())


def read_rows(path: Path, id_field: str, text_field: str, name: str | None = None) -> Iterator[InputRow]:
    """Stream the rows of one input file; a row that cannot be parsed comes with its ``problem``."""
    name = name or path.name
    fmt = file_format(path)
    with path.open("rb") as fh, _readable(path):
        if fmt == "jsonl":
            _check_jsonl(fh, path, id_field, text_field)
            numbered: Iterable[tuple[int, Row]] = ((row.number, row) for row in jsonl_rows(fh))
        else:
            columns, rows = csv_rows(fh) if fmt == "csv" else parquet_rows(path, [id_field, text_field])
            _check_columns(path, columns, id_field, text_field)
            # Numbered by record, not line: a quoted CSV cell can span lines.
            numbered = enumerate(rows, start=1)
        for number, row in numbered:
            if row.values is None:
                yield InputRow(None, None, name, number, row.problem)
            elif fmt == "csv":  # CSV has no null: an empty cell is a missing value.
                yield InputRow(row.values[id_field] or None, row.values[text_field] or None, name, number)
            else:
                yield InputRow(row.values.get(id_field), row.values.get(text_field), name, number)


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A file that cannot be read as its format at all is an :class:`InputError`."""
    try:
        yield
    except FormatError as err:
        where = f"{path} line {err.line}" if err.line else str(path)
        raise InputError(f"{where}: {err.reason}") from None


def _check_jsonl(fh: BinaryIO, path: Path, id_field: str, text_field: str) -> None:
    """Fail fast on a JSON array or a misnamed field, rather than writing one error per row."""
    seen_keys: set[str] = set()
    peeked = 0
    for row in jsonl_rows(fh):
        if row.values is not None:
            if text_field in row.values and id_field in row.values:
                break
            seen_keys.update(row.values)
        peeked += 1
        if peeked >= _PEEK_ROWS:
            break
    fh.seek(0)
    if seen_keys:
        for field, option in ((text_field, "--text-field"), (id_field, "--id-field")):
            if field not in seen_keys:
                raise InputError(f"{path}: no row among the first {peeked} has a {field!r} field "
                                 f"(fields: {', '.join(sorted(seen_keys)[:12])}); pass {option}")


def _check_columns(path: Path, columns: Iterable[str], id_field: str, text_field: str) -> None:
    columns = list(columns)
    for field, option in ((text_field, "--text-field"), (id_field, "--id-field")):
        if field not in columns:
            raise InputError(f"{path}: no column {field!r} (columns: {', '.join(columns[:12])}); pass {option}")


# -- outputs -------------------------------------------------------------------------------------

def output_format(path: Path) -> str:
    """The format an output path asks for (folders are not outputs)."""
    try:
        return file_format(path)
    except InputError:
        raise InputError(f"{path}: output must end in .jsonl, .csv or .parquet") from None


def write_output(parts: list[Path], dest: BinaryIO, fmt: str, int_ids: bool) -> int:
    """Write the rows of JSON Lines ``parts`` (in order) to ``dest`` in ``fmt``; returns rows."""
    if fmt == "jsonl":
        return _concat(parts, dest)
    if fmt == "csv":
        return _write_csv(parts, dest)
    return _write_parquet(parts, dest, int_ids)


def iter_part_rows(parts: list[Path]) -> Iterator[dict]:
    """The rows of JSON Lines part files, in order."""
    for part in parts:
        with part.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def _concat(parts: list[Path], dest: BinaryIO) -> int:
    n = 0
    for part in parts:
        with part.open("rb") as fh:
            for line in fh:
                dest.write(line)
                n += 1
    return n


def _write_csv(parts: list[Path], dest: BinaryIO) -> int:
    import io

    text = io.TextIOWrapper(dest, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(("id",) + RESULT_KEYS)
    n = 0
    for row in iter_part_rows(parts):
        writer.writerow([row["id"]] + [json.dumps(row.get(k), ensure_ascii=False) for k in RESULT_KEYS])
        n += 1
    text.flush()
    text.detach()
    return n


def parquet_schema(int_ids: bool):
    """The typed Parquet schema of output rows (scores are maps: label -> probability)."""
    import pyarrow as pa

    scores = pa.map_(pa.string(), pa.float64())
    span = pa.struct([("text", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
    return pa.schema([
        ("id", pa.int64() if int_ids else pa.string()),
        ("topic", pa.struct([("label", pa.string()), ("score", pa.float64()), ("scores", scores)])),
        ("stance", pa.list_(pa.struct([("target", pa.string()), ("label", pa.string()),
                                        ("score", pa.float64()), ("scores", scores)]))),
        ("entities", pa.list_(pa.struct([("text", pa.string()), ("label", pa.string()),
                                          ("start", pa.int64()), ("end", pa.int64()),
                                          ("score", pa.float64())]))),
        ("warnings", pa.list_(pa.string())),
        ("model", pa.struct([("name", pa.string()), ("version", pa.string())])),
        ("actors", pa.list_(pa.struct([("target", pa.string()), ("actor", pa.string()), ("source", pa.string()),
                                        ("label", pa.string()), ("score", pa.float64()), ("scores", scores),
                                        ("mentions", pa.list_(span)), ("evidence", pa.list_(span))]))),
    ])


def _write_parquet(parts: list[Path], dest: BinaryIO, int_ids: bool, chunk: int = 2048) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(int_ids)
    n = 0
    with pq.ParquetWriter(dest, schema) as writer:
        buf: list[dict] = []
        for row in iter_part_rows(parts):
            if not int_ids:
                row["id"] = str(row["id"])
            buf.append(row)
            if len(buf) >= chunk:
                writer.write_table(pa.Table.from_pylist(buf, schema=schema))
                n, buf = n + len(buf), []
        if buf or n == 0:
            writer.write_table(pa.Table.from_pylist(buf, schema=schema))
            n += len(buf)
    return n


def read_output(path: Path) -> list[dict]:
    """Read an output file back into ``{"id", topic, stance, entities, warnings, model}`` dicts.

    The inverse of :func:`write_output` for every format: Parquet maps and CSV JSON cells come
    back as the same nested dicts that ``POST /label`` returns.
    """
    fmt = output_format(path)
    if fmt == "jsonl":
        return list(iter_part_rows([path]))
    if fmt == "csv":
        with path.open("rb") as fh, _readable(path):
            recs = list(csv_rows(fh)[1])
        if bad := next((rec for rec in recs if rec.values is None), None):
            raise InputError(f"{path} line {bad.number}: {bad.problem}")
        return [{"id": rec.values["id"], **{k: json.loads(rec.values[k]) for k in RESULT_KEYS}}
                for rec in recs]
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for row in rows:
        if row["topic"] is not None:
            row["topic"]["scores"] = dict(row["topic"]["scores"])
        for st in row["stance"] + (row.get("actors") or []):
            st["scores"] = dict(st["scores"])
    return rows
