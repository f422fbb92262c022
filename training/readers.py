"""Read labelled data for topic, stance and NER from JSON Lines, CSV/TSV, CoNLL and HF datasets.

Every reader returns a :class:`ReadResult`: typed examples, the rows it skipped and why, and a
fingerprint of the source that training records in the model artifact. Bad data stops the read
with a :class:`DataError` naming file, line and field; ``skip_bad=True`` skips such rows and
lists them in ``ReadResult.skipped`` instead, so nothing is ever dropped silently.

The format comes from the source: ``.jsonl``/``.json`` (JSON Lines), ``.csv``, ``.tsv``,
``.conll``/``.txt``/``.bio`` (CoNLL; these four may be ``.gz``-compressed), ``.parquet``, a folder
written by ``datasets`` ``save_to_disk`` or holding data files, or ``hf:user/name[:config]`` for
the Hugging Face hub.

Turning a file's bytes into numbered rows is :mod:`khabar.models.rows`, shared with batch jobs;
this module adds the policy: which formats hold which task, typed examples, raising or skipping.
It is long (~570 lines) on purpose: every format feeds one row pipeline (source -> rows -> typed
examples with line-numbered errors and a fingerprint), and the pipeline is easier to keep
consistent in one place than spread over a file per format.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from khabar.models.rows import FormatError, Row, csv_rows, decode_line, jsonl_rows, numbered_lines
from khabar.training.labels import LabelError, bio_error, map_label, split_tag
from khabar.training.labels import repair_bio as _repair_tags

_JSONL = {".jsonl", ".json", ".ndjson"}
_CSV = {".csv": ",", ".tsv": "\t"}
_CONLL = {".conll", ".txt", ".bio", ".iob"}
_PROGRESS_BYTES = 64 << 20  # a progress bar for bigger sources (ant21 train, 69 MB: 1-2 s)
_SPLIT_ALIASES = {"dev": "validation", "validation": "dev", "val": "validation"}


@dataclass(frozen=True)
class TopicExample:
    """One article with its topic; the model encodes ``title`` and ``text`` together."""

    id: str
    text: str
    label: str
    title: str = ""


@dataclass(frozen=True)
class StanceExample:
    """The stance of ``text`` toward ``target`` (a claim, a headline or a topic name)."""

    id: str
    target: str
    text: str
    label: str


@dataclass(frozen=True)
class NerExample:
    """One sentence: its tokens and one BIO tag per token."""

    id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


class DataError(ValueError):
    """Bad labelled data; the message names the file, the line (or row) and the field."""

    def __init__(self, source: str, line: int | None, field: str | None, reason: str,
                 unit: str = "line") -> None:
        where = source if line is None else f"{source} {unit} {line}"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")
        self.source, self.line, self.field, self.reason = source, line, field, reason
        self.unit = unit

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the parts so the error survives pickling (worker processes).
        return DataError, (self.source, self.line, self.field, self.reason, self.unit)


@dataclass
class ReadResult:
    """What a reader returns.

    ``skipped`` holds ``(source, line, reason)`` for every row left out with ``skip_bad``;
    ``repaired`` the same for NER tags changed by ``repair_bio``.
    """

    examples: list
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    repaired: list[tuple[str, int, str]] = field(default_factory=list)
    source: str = ""
    sha256: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """``{"sha256", "n"}``: hash of the source bytes (of the examples for HF data) and count."""
        return {"sha256": self.sha256, "n": len(self.examples)}


class _RowError(Exception):
    """A problem with one row, before the reader knows whether to raise or skip it."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class _Source:
    """A resolved source: its display name, stem for generated ids, kind, and raw bytes."""

    name: str
    stem: str
    kind: str  # "jsonl", "csv", "conll" or "hf"
    data: bytes = b""
    delimiter: str = ","
    hf: Any = None  # a datasets.Dataset when kind == "hf"
    sha256: str = ""  # of the raw file bytes: what a user can re-hash to check

    @property
    def unit(self) -> str:
        return "row" if self.kind == "hf" else "line"


# ---------------------------------------------------------------------------- public readers


def read_topic(source: str | Path, *, text_field: str = "text", label_field: str = "label",
               id_field: str = "id", title_field: str = "title",
               label_map: Mapping[str, str] | None = None, labels: Sequence[str] | None = None,
               skip_bad: bool = False, split: str = "train") -> ReadResult:
    """Read topic examples; ``title`` is optional (kept apart from ``text``), ``id`` too.

    ``labels`` restricts the label set (after ``label_map``); None accepts any label.
    ``split`` picks the split of a ``datasets`` source. Rows without an id get
    ``f"{stem}-{line}"``.
    """
    src = _resolve(source, split)
    need = {"text_field": text_field, "label_field": label_field}

    def build(row: Mapping[str, Any], line: int) -> TopicExample:
        return TopicExample(
            id=_id(row, id_field, src.stem, line),
            title=_text(row, title_field, "title_field", required=False),
            text=_text(row, text_field, "text_field"),
            label=_label(row, label_field, label_map, labels),
        )

    return _collect(src, _rows(src, need), build, skip_bad)


def read_stance(source: str | Path, *, target_field: str = "target", text_field: str = "text",
                label_field: str = "label", id_field: str = "id",
                label_map: Mapping[str, str] | None = None, labels: Sequence[str] | None = None,
                target_map: Mapping[str, str] | None = None,
                skip_bad: bool = False, split: str = "train") -> ReadResult:
    """Read stance examples (the stance of ``text`` toward ``target``).

    To train on the unified labels pass ``label_map=DEFAULT_STANCE_MAP, labels=STANCE_LABELS``
    from :mod:`khabar.training.labels`; by default the dataset's own labels are kept.
    ``target_map`` renames targets exactly as written (Mawqif names its three targets in English;
    users name theirs in Arabic, so the model should learn them in Arabic).
    """
    src = _resolve(source, split)
    need = {"target_field": target_field, "text_field": text_field, "label_field": label_field}
    renames = dict(target_map or {})

    def build(row: Mapping[str, Any], line: int) -> StanceExample:
        target = _text(row, target_field, "target_field")
        return StanceExample(
            id=_id(row, id_field, src.stem, line),
            target=renames.get(target, target),
            text=_text(row, text_field, "text_field"),
            label=_label(row, label_field, label_map, labels),
        )

    return _collect(src, _rows(src, need), build, skip_bad)


def read_ner(source: str | Path, *, label_map: Mapping[str, str] | None = None,
             types: Sequence[str] | None = None, skip_bad: bool = False, split: str = "train",
             repair_bio: bool = False, tokens_field: str = "tokens",
             tags_field: str = "ner_tags") -> ReadResult:
    """Read NER sentences from CoNLL (``token TAG`` a line, blank line between sentences).

    A ``datasets`` source or JSON Lines file gives one sentence a row in ``tokens_field`` and
    ``tags_field`` (tag strings, or ints of a ClassLabel). ``label_map`` maps entity types
    (``{"PER": "PERS", "DATE": "O"}``; ``"O"`` drops a type); ``types`` restricts the types
    after mapping. A broken BIO sequence (``I-X`` not continuing an ``X``) is an error unless
    ``repair_bio`` is set, which reads it as ``B-X`` and lists it in ``ReadResult.repaired``.
    Sentence ids are ``f"{stem}-{index}"`` (0-based, in file order, counting skipped ones).
    """
    src = _resolve(source, split)
    if src.kind == "conll":
        sentences = _conll_sentences(src)
    elif src.kind == "csv":
        raise DataError(src.name, None, None, "NER data is read from CoNLL, JSON Lines "
                                              "(tokens + ner_tags) or datasets, not CSV")
    else:
        need = {"tokens_field": tokens_field, "tags_field": tags_field}
        sentences = _list_sentences(_rows(src, need), tokens_field, tags_field)
    repaired: list[tuple[str, int, str]] = []

    def build(sent: tuple[int, list[str], list[str], list[int]], line: int) -> NerExample:
        index, tokens, raw_tags, lines = sent
        tags = [_ner_tag(t, label_map, types, lines[i]) for i, t in enumerate(raw_tags)]
        if repair_bio:
            fixed, changed = _repair_tags(tags)
            repaired.extend((src.name, lines[i], f"{tags[i]} -> {fixed[i]}") for i in changed)
            tags = list(fixed)
        found = bio_error(tags)
        if found is not None:
            raise _LineError(lines[found[0]], "tag", found[1])
        return NerExample(id=f"{src.stem}-{index}", tokens=tuple(tokens), tags=tuple(tags))

    result = _collect(src, sentences, build, skip_bad, ids_unique=False)
    result.repaired = repaired
    return result


def read_any(task: str, source: str | Path, **opts: Any) -> ReadResult:
    """Read ``source`` for ``task`` ("topic", "stance" or "ner"), passing ``opts`` through."""
    readers: dict[str, Callable[..., ReadResult]] = {
        "topic": read_topic, "stance": read_stance, "ner": read_ner}
    if task not in readers:
        raise ValueError(f"unknown task {task!r}; use one of: {', '.join(readers)}")
    return readers[task](source, **opts)


# ---------------------------------------------------------------------------- resolving sources


def _resolve(source: str | Path, split: str) -> _Source:
    """Work out the format of ``source`` and load its bytes (or the HF dataset)."""
    name = str(source)
    if name.startswith("hf:"):
        return _Source(name, _stem(name[3:]), "hf", hf=_load_hub(name, split))
    path = Path(source)
    if path.is_dir():
        return _Source(name, path.name, "hf", hf=_load_folder(path, name, split))
    if not path.exists():
        raise DataError(name, None, None, "no such file or folder; check the path")
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    stem = Path(path.stem).stem if gz else path.stem
    if ext == ".parquet":
        return _Source(name, stem, "hf", hf=_load_files("parquet", path, name))
    if ext in _JSONL:
        kind = "jsonl"
    elif ext in _CSV:
        kind = "csv"
    elif ext in _CONLL:
        kind = "conll"
    else:
        raise DataError(name, None, None, (
            f"cannot tell the format from the extension {ext or '(none)'!r}; use .jsonl, .csv, "
            ".tsv, .conll/.txt/.bio, .parquet, a datasets folder or hf:user/name"))
    raw = path.read_bytes()
    data = gzip.decompress(raw) if gz else raw
    if not data.strip():
        raise DataError(name, None, None, "empty file: no examples to read")
    return _Source(name, stem, kind, data=data, delimiter=_CSV.get(ext, ","),
                   sha256=hashlib.sha256(raw).hexdigest())


def _stem(hub_id: str) -> str:
    return hub_id.split(":")[0].rstrip("/").split("/")[-1]


def _load_hub(name: str, split: str) -> Any:
    """``hf:user/name[:config]`` through ``datasets.load_dataset`` (needs network or HF cache)."""
    import datasets

    repo, _, config = name[3:].partition(":")

    def load(s: str) -> Any:
        return datasets.load_dataset(repo, config or None, split=s)

    try:
        try:
            return load(split)
        except ValueError:
            if split not in _SPLIT_ALIASES:
                raise
            return load(_SPLIT_ALIASES[split])
    except Exception as err:  # hub, network and cache failures come in many exception types
        raise DataError(name, None, None, (
            f"could not load it with datasets.load_dataset ({type(err).__name__}: {err}); "
            "check the name, split and network, or pass a local folder")) from err


def _load_folder(path: Path, name: str, split: str) -> Any:
    """A ``save_to_disk`` folder (Dataset or DatasetDict), else a folder of data files."""
    import datasets

    try:
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path))
    except Exception as err:  # datasets raises many types for unreadable folders
        raise DataError(name, None, None, (
            f"not a readable datasets folder ({type(err).__name__}: {err}); "
            "write it with save_to_disk or put .jsonl/.csv/.parquet files in it")) from err
    if isinstance(loaded, datasets.DatasetDict):
        for s in (split, _SPLIT_ALIASES.get(split)):
            if s in loaded:
                return loaded[s]
        raise DataError(name, None, None,
                        f"no split {split!r} (splits: {', '.join(loaded)}); pass split=")
    return loaded


def _load_files(builder: str, path: Path, name: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:
        raise DataError(name, None, None, f"unreadable {builder} file ({err})") from err


# ---------------------------------------------------------------------------- rows per format


_Row = tuple[int, Any]  # (line or row number, a record or the _RowError it raised)


class _LineError(_RowError):
    """A row error on a specific line inside a multi-line record (a CoNLL sentence)."""

    def __init__(self, line: int, field: str | None, reason: str) -> None:
        super().__init__(field, reason)
        self.line = line


def _open(src: _Source) -> Iterator[bytes]:
    """The source's lines as a binary file gives them, with a progress bar for big sources."""
    bar = tqdm(total=src.data.count(b"\n") + 1, desc=f"reading {src.name}", unit=" lines",
               disable=len(src.data) < _PROGRESS_BYTES, leave=False)
    with bar:
        for number, raw in enumerate(io.BytesIO(src.data), 1):
            if number % 1000 == 0:
                bar.update(1000)
            yield raw


def _rows(src: _Source, need: Mapping[str, str]) -> Iterable[_Row]:
    """Records of a JSON Lines, CSV or datasets source; ``need`` maps option -> column."""
    if src.kind == "jsonl":
        return _numbered(src, jsonl_rows(_open(src)))
    if src.kind == "conll":
        raise DataError(src.name, None, None,
                        "CoNLL holds NER data; use read_ner, or JSON Lines/CSV for this task")
    if src.kind == "hf":
        columns, rows = src.hf.column_names, _hf_rows(src)
    else:
        try:
            columns, records = csv_rows(_open(src), src.delimiter)
        except FormatError as err:
            raise DataError(src.name, err.line, None, err.reason) from None
        rows = _numbered(src, records)
    for option, name in need.items():
        if name not in columns:
            raise DataError(src.name, 1 if src.kind == "csv" else None, name, (
                f"no such column (columns: {', '.join(columns)}); pass {option}= to name it"))
    return rows


def _numbered(src: _Source, records: Iterator[Row]) -> Iterator[_Row]:
    """Rows of :mod:`khabar.models.rows` as ``(line, record or _RowError)``."""
    try:
        for row in records:
            yield row.number, row.values if row.problem is None else _RowError(None, row.problem)
    except FormatError as err:
        raise DataError(src.name, err.line, None, err.reason) from None


def _hf_rows(src: _Source) -> Iterator[_Row]:
    """Rows of a datasets.Dataset, numbered from 1, with ClassLabel ints turned into names."""
    ds = src.hf
    names = {k: n for k, f in ds.features.items() if (n := _class_names(f))}
    rows = tqdm(ds, desc=f"reading {src.name}", leave=False, disable=len(ds) < 50_000)
    for number, row in enumerate(rows, 1):
        for key, label_names in names.items():
            row[key] = _name_of(row.get(key), label_names)
        yield number, row


def _class_names(feature: Any) -> list[str] | None:
    """Names of a ClassLabel feature (or of a list of them), else None."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _name_of(value: Any, names: list[str]) -> Any:
    if isinstance(value, list):
        return [_name_of(v, names) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    return value  # out of range (-1 = no label): left for the label checks to report


def _conll_sentences(src: _Source) -> Iterator[_Row]:
    """Sentences as ``(index, tokens, tags, lines)``; a bad line makes its sentence an error."""
    index = 0
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    error: _RowError | None = None

    def flush() -> _Row:
        nonlocal index, tokens, tags, lines, error
        item: _Row = (lines[0], error or (index, tokens, tags, lines))
        index, tokens, tags, lines, error = index + 1, [], [], [], None
        return item

    for number, raw in numbered_lines(_open(src)):
        text, problem = decode_line(raw)
        if problem is not None:
            error = error or _LineError(number, None, problem)
        stripped = text.strip(" \t")
        if not stripped or stripped.startswith("-DOCSTART-"):
            if lines:
                yield flush()
            continue
        # Split on ASCII blanks only: a no-break space inside a token must not cut it.
        parts = re.split(r"[ \t]+", stripped)
        if len(parts) < 2:
            error = error or _LineError(
                number, None, "expected 'token TAG' (a token, a space or tab, then its tag)")
        tokens.append(parts[0])
        tags.append(parts[-1])
        lines.append(number)
    if lines:
        yield flush()


def _list_sentences(rows: Iterable[_Row], tokens_field: str, tags_field: str) -> Iterator[_Row]:
    """Sentences from rows holding a token list and a tag list (datasets, JSON Lines)."""
    for number, row in rows:
        if isinstance(row, _RowError):
            yield number, row
            continue
        try:
            tokens = _field(row, tokens_field, "tokens_field")
            tags = _field(row, tags_field, "tags_field")
            for name, value in ((tokens_field, tokens), (tags_field, tags)):
                if not isinstance(value, list):
                    raise _RowError(name, f"expected a list, got {type(value).__name__}")
            if len(tokens) != len(tags):
                raise _RowError(tags_field, f"{len(tags)} tags for {len(tokens)} tokens")
            if not tokens:
                raise _RowError(tokens_field, "empty sentence")
            if any(not isinstance(t, str) or not t.strip() for t in tokens):
                raise _RowError(tokens_field, "every token must be a non-empty string")
            if any(not isinstance(t, str) for t in tags):
                raise _RowError(tags_field, "tags must be strings or ClassLabel ints")
            yield number, (number - 1, tokens, tags, [number] * len(tokens))
        except _RowError as err:
            yield number, err


# ---------------------------------------------------------------------------- fields


def _field(row: Mapping[str, Any], name: str, option: str) -> Any:
    if name not in row:
        raise _RowError(name, f"missing (fields: {', '.join(map(str, row))}); "
                              f"pass {option}= to name the right one")
    return row[name]


def _text(row: Mapping[str, Any], name: str, option: str, required: bool = True) -> str:
    if not required and row.get(name) is None:
        return ""
    value = _field(row, name, option)
    if not isinstance(value, str):
        raise _RowError(name, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _RowError(name, "empty text" if value == "" else "whitespace-only text")
    return value


def _id(row: Mapping[str, Any], name: str, stem: str, line: int) -> str:
    value = row.get(name)
    if value is None or value == "":
        return f"{stem}-{line}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _RowError(name, f"expected a string or integer id, got {type(value).__name__}")
    return str(value)


def _label(row: Mapping[str, Any], name: str, label_map: Mapping[str, str] | None,
           labels: Sequence[str] | None) -> str:
    value = _field(row, name, "label_field")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _RowError(name, f"expected a string label, got {type(value).__name__}")
    try:
        return map_label(str(value), label_map, labels)
    except LabelError as err:
        raise _RowError(name, str(err)) from None


def _ner_tag(tag: str, label_map: Mapping[str, str] | None, types: Sequence[str] | None,
             line: int) -> str:
    """Check one tag's form, map its type, check the type is allowed."""
    try:
        prefix, kind = split_tag(tag)
    except LabelError as err:
        raise _LineError(line, "tag", str(err)) from None
    if kind is None:
        return tag
    if label_map:
        kind = map_label(kind, label_map, None)
        if kind == "O":
            return "O"
    if types is not None and kind not in types:
        raise _LineError(line, "tag", (
            f"unknown entity type {kind!r} in tag {tag!r} (allowed: {', '.join(types)}); "
            f"map it with label_map={{{kind!r}: <a type or 'O'>}}"))
    return f"{prefix}-{kind}"


# ---------------------------------------------------------------------------- collecting


def _collect(src: _Source, rows: Iterable[_Row], build: Callable[[Any, int], Any],
             skip_bad: bool, ids_unique: bool = True) -> ReadResult:
    """Build examples from rows; raise on the first bad row, or skip and record it."""
    examples: list = []
    skipped: list[tuple[str, int, str]] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        try:
            if isinstance(row, _RowError):
                raise row
            example = build(row, line)
            if ids_unique:
                if example.id in first_line:
                    raise _RowError("id", f"duplicate id {example.id!r} "
                                          f"(first at {src.unit} {first_line[example.id]})")
                first_line[example.id] = line
        except _RowError as err:
            at = getattr(err, "line", line)
            if not skip_bad:
                raise DataError(src.name, at, err.field, err.reason, src.unit) from None
            where = f"field {err.field!r}: " if err.field else ""
            skipped.append((src.name, at, where + err.reason))
            continue
        examples.append(example)
    if not examples:
        left = f" left after skipping {len(skipped)} bad rows" if skipped else ""
        raise DataError(src.name, None, None, f"no examples{left}")
    digest = src.sha256 or _examples_digest(examples)
    return ReadResult(examples, skipped, source=src.name, sha256=digest)


def _examples_digest(examples: list) -> str:
    """sha256 of the examples as canonical JSON Lines (for sources without one file's bytes)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(asdict(ex), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
