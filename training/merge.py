"""Merging newly labelled rows into a model's recorded training data (for `khabar retrain`).

Rows are taken oldest first (the base model's sources in their recorded order, then the new files
in the order given). A newer row replaces an older one with the same normalized text, and a new
row also replaces one with the same id (as its file gave it); when the two disagree on the label,
that is a *conflict*: it is reported and the newer label wins. New rows that repeat a held-out
example are dropped (the candidate must not see what the gate scores it on). The merged set is
written as plain files that the training config then points at, so a retraining run depends only
on files and a config.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from khabar.models.normalize import normalize
from khabar.models.schema import TASKS
from khabar.training.config import Source
from khabar.training.data import read_source, topic_text
from khabar.training.readers import NerExample, StanceExample, TopicExample

_CONLL = {".conll", ".txt", ".bio", ".iob"}
MERGED_NAMES = {"topic": "topic.jsonl", "stance": "stance.jsonl", "ner": "ner.jsonl"}


class MergeError(ValueError):
    """New data that cannot be merged; the message says what to change."""


# ---------------------------------------------------------------------------- which task a file holds


def parse_new(spec: str) -> tuple[str, Path]:
    """``"topic:FILE"`` -> ("topic", FILE); a bare FILE gets its task from :func:`infer_task`."""
    head, sep, rest = spec.partition(":")
    if sep and head in TASKS:
        return head, Path(rest)
    path = Path(spec)
    return infer_task(path), path


def infer_task(path: Path) -> str:
    """The task a labelled file is for, from its format and fields.

    CoNLL -> ner; JSON Lines/CSV with ``target`` -> stance; with ``tokens`` and ``ner_tags`` ->
    ner; with ``label`` (and no ``target``) -> topic. Raises :class:`MergeError` otherwise.
    """
    if not path.is_file():
        raise MergeError(f"{path} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = (suffixes[-2] if gz and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    if ext in _CONLL:
        return "ner"
    opener = gzip.open if gz else open
    fields: set[str] = set()
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        if ext in {".csv", ".tsv"}:
            fields = set(next(csv.reader(fh, delimiter="\t" if ext == ".tsv" else ","), []))
        else:
            for line in fh:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    fields = set(row) if isinstance(row, dict) else set()
                    break
    if "target" in fields:
        return "stance"
    if {"tokens", "ner_tags"} <= fields:
        return "ner"
    if "label" in fields:
        return "topic"
    raise MergeError(f"cannot tell which task {path} is for (fields: {', '.join(sorted(fields)) or 'none'}); "
                     f"name it: --new topic:{path}, stance:{path} or ner:{path}")


# ---------------------------------------------------------------------------- keys and labels


def _norm(text: str) -> str:
    return normalize(text).text.casefold()


def text_key(task: str, ex) -> str:
    """What makes two rows "the same text": normalized article, (target, text) pair, or sentence."""
    if task == "topic":
        return _norm(topic_text(ex))
    if task == "stance":
        return _norm(ex.target) + "\x1f" + _norm(ex.text)
    return _norm(" ".join(ex.tokens))


def label_of(task: str, ex) -> str | tuple:
    """The label a conflict is about (a BIO tag sequence for NER)."""
    return ex.tags if task == "ner" else ex.label


def _explicit_id(ex, origin: str) -> str | None:
    """The row's id when its file gave one; readers invent ``<stem>-<n>`` ids (and NER ids are
    always positional), which say nothing across files."""
    if isinstance(ex, NerExample):
        return None
    stem = Path(origin).name.split(".")[0]
    return None if re.fullmatch(re.escape(stem) + r"-\d+", ex.id) else ex.id


# ---------------------------------------------------------------------------- merging


@dataclass
class TaskMerge:
    """The merged rows of one task and what happened on the way."""

    examples: list
    base_rows: int = 0
    new_rows: int = 0
    duplicates: dict[str, int] = field(default_factory=lambda: {"same_id": 0, "same_text": 0})
    conflicts: list[dict] = field(default_factory=list)
    heldout_dropped: int = 0
    new_kept: int = 0
    new_labels: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts and conflicts, for merge.json and the console."""
        return {"base_rows": self.base_rows, "new_rows": self.new_rows, "duplicates_removed": self.duplicates,
                "conflicts": self.conflicts, "heldout_dropped": self.heldout_dropped,
                "new_rows_kept": self.new_kept, "new_labels": self.new_labels, "merged_rows": len(self.examples)}


def merge_rows(task: str, rows: list[tuple[object, str, bool]], heldout_keys: set[str] = frozenset(),
               known_labels: list[str] = ()) -> TaskMerge:
    """Merge ``(example, origin, is_new)`` rows given oldest first; newer rows win.

    ``heldout_keys`` are text keys of held-out examples: new rows with one are dropped.
    ``known_labels`` (the base model's) tell which labels of the new rows are new.
    """
    out = TaskMerge(examples=[])
    slots: dict[int, tuple[object, str, bool]] = {}  # insertion order = output order
    by_id: dict[str, int] = {}
    by_text: dict[str, int] = {}
    for n, (ex, origin, is_new) in enumerate(rows):
        key, rid = text_key(task, ex), _explicit_id(ex, origin)
        if is_new:
            out.new_rows += 1
            if key in heldout_keys:
                out.heldout_dropped += 1
                continue
        else:
            out.base_rows += 1
        hits: dict[int, str] = {}
        if is_new and rid and rid in by_id:  # base sources are separate datasets: their ids may collide
            hits[by_id[rid]] = "same_id"
        if key in by_text:
            hits[by_text[key]] = "same_text"
        for slot, why in hits.items():
            old, old_origin, _ = slots.pop(slot)
            if label_of(task, old) != label_of(task, ex):
                out.conflicts.append({
                    "text": _excerpt(task, ex), "why": why,
                    "old": {"id": old.id, "label": _show(label_of(task, old)), "source": old_origin},
                    "new": {"id": ex.id, "label": _show(label_of(task, ex)), "source": origin}})
            else:
                out.duplicates[why] += 1
            by_text.pop(text_key(task, old), None)
            old_id = _explicit_id(old, old_origin)
            if old_id:
                by_id.pop(old_id, None)
        slots[n] = (ex, origin, is_new)
        by_text[key] = n
        if rid:
            by_id[rid] = n
    out.examples = _unique_ids([ex for ex, _, _ in slots.values()])
    out.new_kept = sum(1 for _, _, new in slots.values() if new)
    if task != "ner":
        seen = set(known_labels)
        out.new_labels = sorted({e.label for e in out.examples} - seen) if known_labels else []
    return out


def _unique_ids(examples: list) -> list:
    """Rows of different datasets may share an id; the merged file needs unique ones."""
    from dataclasses import replace

    seen: set[str] = set()
    out = []
    for ex in examples:
        new_id, k = ex.id, 1
        while new_id in seen:
            k += 1
            new_id = f"{ex.id}~{k}"
        seen.add(new_id)
        out.append(ex if new_id == ex.id else replace(ex, id=new_id))
    return out


def _excerpt(task: str, ex, n: int = 80) -> str:
    text = f"{ex.target} || {ex.text}" if task == "stance" else (
        " ".join(ex.tokens) if task == "ner" else topic_text(ex))
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _show(label) -> str:
    return " ".join(label) if isinstance(label, tuple) else str(label)


def read_rows(task: str, sources: list[Source], *, seed: int, repair_bio: bool, is_new: bool,
              expect_sha: list[str | None] | None = None, log=print) -> list[tuple[object, str, bool]]:
    """Read sources into merge rows; warn when a recorded file's bytes changed since training."""
    rows = []
    for i, src in enumerate(sources):
        data = read_source(task, src, seed=seed, repair_bio=repair_bio)
        want = (expect_sha or [None] * len(sources))[i]
        if want and data.fingerprint.get("sha256") != want:
            log(f"warning: {src.path} changed since the base model was trained on it "
                f"(sha256 {want[:12]} -> {str(data.fingerprint.get('sha256'))[:12]}); merging the file as it is now")
        if data.skipped:
            log(f"{task}: {src.path}: skipped {data.skipped} bad rows")
        rows += [(ex, str(src.path), is_new) for ex in data.examples]
    return rows


# ---------------------------------------------------------------------------- writing


def example_record(ex) -> dict:
    """The JSON Lines record of one example (NER: tokens and ner_tags, which the reader takes)."""
    if isinstance(ex, NerExample):
        return {"id": ex.id, "tokens": list(ex.tokens), "ner_tags": list(ex.tags)}
    if isinstance(ex, (TopicExample, StanceExample)):
        return asdict(ex)
    raise TypeError(f"not an example: {type(ex).__name__}")


def merged_bytes(examples: list) -> bytes:
    """The merged file's content: one JSON object a line, stable for the same rows."""
    return "".join(json.dumps(example_record(e), ensure_ascii=False, sort_keys=True) + "\n"
                   for e in examples).encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (a kill leaves the old file or the new)."""
    from khabar.models.files import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)


def content_id(parts: dict[str, bytes], *extra: str) -> str:
    """A short hash of the merged files (and ``extra`` strings): the retraining folder's name."""
    h = hashlib.sha256()
    for s in extra:
        h.update(s.encode() + b"\0")
    for name in sorted(parts):
        h.update(name.encode() + b"\0" + hashlib.sha256(parts[name]).digest())
    return h.hexdigest()[:12]
