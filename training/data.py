"""From config sources to examples, and from examples to labelled training windows."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from khabar.models.normalize import normalize
from khabar.models.windows import Window, evidence_ranked, make_windows, word_spans
from khabar.training.config import Source, TrainConfig
from khabar.training.labels import DEFAULT_STANCE_MAP, NER_TYPES, STANCE_LABELS, bio_labels
from khabar.training.readers import NerExample, StanceExample, TopicExample, read_any

IGNORE = -100
BLEND_SEED_OFFSET = 7919


@dataclass
class SourceData:
    """Examples read from one source, with what the artifact records about it."""

    name: str
    examples: list
    fingerprint: dict
    skipped: int = 0
    repaired: int = 0


@dataclass
class TaskExamples:
    """Training examples (all sources merged) and dev sets (one per source) for one task."""

    train: list
    dev: dict[str, list] = field(default_factory=dict)
    sources: dict[str, list[dict]] = field(default_factory=dict)
    # Training rows kept from the encoder for fitting a hybrid head's blend (TaskData.blend_holdout).
    blend: list = field(default_factory=list)
    # The source name of each row of ``train`` (per-source class weights, training/weighting.py).
    train_sources: list[str] = field(default_factory=list)


def in_blend_holdout(example_id: str, seed: int, fraction: float) -> bool:
    """Whether a training row is one of those a task's ``blend_holdout`` keeps from the encoder
    (a different hash seed from source holdouts, so the two splits are independent)."""
    return bool(fraction) and hash_unit(example_id, seed + BLEND_SEED_OFFSET) < fraction


def hash_unit(text: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_source(task: str, src: Source, *, seed: int, repair_bio: bool = True) -> SourceData:
    """Read one source, apply its label map, holdout split and subsample."""
    opts = dict(src.options)
    opts["skip_bad"] = src.skip_bad
    if task == "stance":
        opts.setdefault("label_map", {**DEFAULT_STANCE_MAP, **(src.label_map or {})})
        opts.setdefault("labels", STANCE_LABELS)
    elif task == "ner":
        opts.setdefault("label_map", src.label_map)
        opts.setdefault("types", NER_TYPES)
        opts.setdefault("repair_bio", repair_bio)
    elif src.label_map:
        opts["label_map"] = src.label_map
    result = read_any(task, src.path, **opts)
    examples = result.examples
    if src.holdout:
        frac = float(src.holdout.get("fraction", 0.2))
        take = src.holdout.get("take", "train")
        hs = int(src.holdout.get("seed", seed))
        inside = [e for e in examples if hash_unit(e.id, hs) < frac]
        examples = inside if take == "heldout" else [e for e in examples if hash_unit(e.id, hs) >= frac]
    if src.limit is not None and len(examples) > src.limit:
        keep = set(sorted((e.id for e in examples), key=lambda i: hash_unit(i, seed))[: src.limit])
        examples = [e for e in examples if e.id in keep]
    fp = {**result.fingerprint(), "n": len(examples), "path": str(src.path),
          "limit": src.limit, "holdout": src.holdout}
    return SourceData(src.display_name(), examples, fp, len(result.skipped), len(result.repaired))


def load_examples(cfg: TrainConfig, log=print) -> dict[str, TaskExamples]:
    """Read every task's training and dev sources, logging skipped and repaired rows."""
    out = {}
    for task, spec in cfg.tasks.items():
        te = TaskExamples(train=[], sources={"train": [], "dev": []})
        for src in spec.train:
            sd = read_source(task, src, seed=cfg.seed, repair_bio=cfg.repair_bio)
            te.train.extend(sd.examples)
            te.train_sources.extend([sd.name] * len(sd.examples))
            te.sources["train"].append({"name": sd.name, **sd.fingerprint})
            _log_counts(log, task, "train", sd)
        for src in spec.dev:
            sd = read_source(task, src, seed=cfg.seed, repair_bio=cfg.repair_bio)
            te.dev[sd.name] = sd.examples
            te.sources["dev"].append({"name": sd.name, **sd.fingerprint})
            _log_counts(log, task, "dev", sd)
        if spec.blend_holdout:
            inside = [in_blend_holdout(e.id, cfg.seed, spec.blend_holdout) for e in te.train]
            te.blend = [e for e, held in zip(te.train, inside) if held]
            te.train = [e for e, held in zip(te.train, inside) if not held]
            te.train_sources = [n for n, held in zip(te.train_sources, inside) if not held]
            log(f"{task}/train: {len(te.blend)} rows held out of the encoder for fitting the blend")
        if not te.train:
            raise ValueError(f"task {task}: the training sources hold no examples")
        out[task] = te
    return out


def _log_counts(log, task: str, split: str, sd: SourceData) -> None:
    extra = ""
    if sd.skipped:
        extra += f", skipped {sd.skipped} bad rows"
    if sd.repaired:
        extra += f", repaired {sd.repaired} BIO tags"
    log(f"{task}/{split}: {sd.name}: {len(sd.examples)} examples{extra}")


def task_labels(task: str, examples: list, configured: list[str] | None) -> list[str]:
    """The label set of a head: configured, unified (stance), BIO (ner) or sorted observed."""
    if configured:
        return list(configured)
    if task == "stance":
        return list(STANCE_LABELS)
    if task == "ner":
        return bio_labels(NER_TYPES)
    return sorted({e.label for e in examples})


def topic_text(ex: TopicExample) -> str:
    """The text a topic model reads: headline and body (the service gets them as one text)."""
    return f"{ex.title}\n{ex.text}" if ex.title else ex.text


def ner_text(tokens: tuple[str, ...]) -> tuple[str, list[tuple[int, int]]]:
    """Join CoNLL tokens with spaces; return the text and each token's character span."""
    spans, pos = [], 0
    for tok in tokens:
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), spans


def ner_word_tags(ex: NerExample) -> tuple[str, list[str]]:
    """Normalized sentence text and one BIO tag per normalized word.

    Normalization may split a CoNLL token (punctuation inside it); the first piece keeps the
    token's tag and the rest continue it (I-X) so entity boundaries stay where the data put them.
    """
    text, spans = ner_text(ex.tokens)
    norm = normalize(text)
    owner = [-1] * (len(text) + 1)
    for t, (s, e) in enumerate(spans):
        for c in range(s, e):
            owner[c] = t
    tags, last = [], -1
    for s, _ in word_spans(norm.text):
        t = owner[norm.offsets[s]] if norm.offsets else -1
        tag = ex.tags[t] if t >= 0 else "O"
        if t == last and tag != "O":
            tag = "I-" + tag[2:]
        tags.append(tag)
        last = t
    return norm.text, tags


def build_windows(task: str, examples: list, tokenizer, labels: list[str], cfg: TrainConfig,
                  log=print) -> list[tuple[Window, object]]:
    """Labelled windows for training: every window of an example carries its label (topic,
    stance) or per-token labels (ner: first sub-token of each word, -100 elsewhere).

    Each example keeps at most the task's window cap (``TaskData.max_windows``, else the config's
    ``max_windows_per_example``; 0 keeps all): the first windows for topic and NER, and for stance
    the windows likeliest to hold the evidence (:func:`evidence_ranked`), which is also how the
    predictor picks the windows it reads.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    if task == "topic":
        texts = [normalize(topic_text(e)).text for e in examples]
        windows = make_windows(tokenizer, texts, max_length=cfg.max_length, stride=cfg.stride)
        targets = [index[e.label] for e in examples]
        labelled = [(w, targets[w.item]) for w in windows]
    elif task == "stance":
        texts = [normalize(e.text).text for e in examples]
        pairs = [(i, normalize(e.target).text) for i, e in enumerate(examples)]
        windows = make_windows(tokenizer, texts, max_length=cfg.max_length, stride=cfg.stride,
                               targets=pairs)
        ranked = evidence_ranked(windows)
        windows = [windows[i] for pair in sorted(ranked) for i in ranked[pair]]
        labelled = [(w, index[examples[w.item].label]) for w in windows]
    else:
        texts, word_tags = zip(*(ner_word_tags(e) for e in examples)) if examples else ((), ())
        windows = make_windows(tokenizer, list(texts), max_length=cfg.max_length, stride=cfg.stride)
        labelled = []
        for w in windows:
            tags = word_tags[w.item]
            labelled.append((w, [index[tags[k]] if k >= 0 else IGNORE for k in w.word_ids]))
    cap = window_cap(cfg, task)
    capped, per_item = [], {}
    for w, lab in labelled:
        n = per_item.get(w.item, 0)
        if cap is None or n < cap:
            capped.append((w, lab))
        per_item[w.item] = n + 1
    dropped = len(labelled) - len(capped)
    log(f"{task}: {len(examples)} examples -> {len(labelled)} windows"
        + (f" ({dropped} beyond the cap of {cap} per example left out)" if dropped else ""))
    return capped


def window_cap(cfg: TrainConfig, task: str) -> int | None:
    """Training windows per example for ``task``: None means every window."""
    spec = cfg.tasks.get(task)
    cap = spec.max_windows if spec is not None and spec.max_windows is not None else cfg.max_windows_per_example
    return cap or None
