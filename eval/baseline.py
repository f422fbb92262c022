"""`--baseline`: classic models trained on the model's own recorded training data.

The artifact records every training source with its sha256 (``training.json`` ``data``); the
baseline reads the same sources the same way (label maps, holdouts, limits from the recorded
config). A source that is gone or has changed since training makes the baseline of that task
unavailable: the run carries a warning saying which file and why, and the report shows it.
"""
from __future__ import annotations

import time
from pathlib import Path

from khabar.eval.classic import MAX_TRAIN_ROWS, StanceBaseline, TopicBaseline, cap_rows
from khabar.eval.crf import MAX_TRAIN_SENTENCES, fit_ner_baseline
from khabar.eval.datasets import EvalSet
from khabar.eval.evaluate import SetResult, SystemRun, finish


class BaselineUnavailable(RuntimeError):
    """The recorded training data of a task cannot be used; the message says which and why."""


def recorded_sources(training: dict, task: str) -> list:
    """The :class:`Source` list the model was trained on, with each recorded sha256 attached.

    Reading options come from the recorded config (same order as the data records); the data
    record's path and fingerprint win where both exist.
    """
    from dataclasses import fields

    from khabar.training.config import Source

    records = ((training.get("data") or {}).get(task) or {}).get("train") or []
    if not records:
        raise BaselineUnavailable(f"the model records no {task} training data")
    configured = (((training.get("config") or {}).get("tasks") or {}).get(task) or {}).get("train") or []
    known = {f.name for f in fields(Source)}
    out = []
    for i, rec in enumerate(records):
        base = dict(configured[i]) if i < len(configured) and isinstance(configured[i], dict) else {}
        base = {k: v for k, v in base.items() if k in known}
        # The whole file, not the encoder's subsample: the baseline is what a user would build from
        # the same labelled data. Holdouts (a dev slice carved from a train file) stay out.
        base.update(path=rec["path"], limit=None, holdout=rec.get("holdout"))
        out.append((Source(**base), rec.get("sha256", "")))
    return out


def training_examples(training: dict, task: str, log=print) -> list:
    """Read the recorded training sources of ``task``, checking each against its fingerprint."""
    from khabar.training.data import read_source
    from khabar.training.readers import DataError

    seed = int((training.get("config") or {}).get("seed", 13))
    repair = bool((training.get("config") or {}).get("repair_bio", True))
    examples: list = []
    for src, sha in recorded_sources(training, task):
        if not src.path.startswith("hf:") and not Path(src.path).exists():
            raise BaselineUnavailable(f"recorded {task} training file {src.path} is missing")
        try:
            data = read_source(task, src, seed=seed, repair_bio=repair)
        except DataError as err:
            raise BaselineUnavailable(f"recorded {task} training file cannot be read: {err}") from None
        if sha and data.fingerprint.get("sha256") != sha:
            raise BaselineUnavailable(f"recorded {task} training file {src.path} has changed since "
                                      f"training (sha256 {data.fingerprint.get('sha256', '')[:12]}..., "
                                      f"recorded {sha[:12]}...)")
        examples.extend(data.examples)
    return examples


def evaluate_baseline(loaded, sets: list[EvalSet], *, n_boot: int = 1000, log=print) -> SystemRun:
    """Train a classic model per task on the recorded data and score it on ``sets``.

    Each task trains on the full recorded training files (a model's ``limit`` subsample is not
    applied), bounded only by ``MAX_TRAIN_ROWS`` / ``MAX_TRAIN_SENTENCES`` (fixed subsets by hash
    of id) which the shared datasets stay under.
    """
    run = SystemRun("baseline", info={"tag": "baseline"})
    seed = int((loaded.training.get("config") or {}).get("seed", 13))
    for task in dict.fromkeys(s.task for s in sets):
        try:
            examples = training_examples(loaded.training, task, log)
        except BaselineUnavailable as err:
            run.warnings.append(f"baseline for {task} skipped: {err}")
            log(f"warning: baseline for {task} skipped: {err}")
            continue
        t0 = time.perf_counter()
        if task == "ner":
            examples = cap_rows(examples, MAX_TRAIN_SENTENCES, seed)
            model, choice = fit_ner_baseline(examples, seed, log)
            run.info["ner"] = {**choice, "train_sentences": len(examples)}
        else:
            examples = cap_rows(examples, MAX_TRAIN_ROWS[task], seed)
            model = (TopicBaseline() if task == "topic" else StanceBaseline()).fit(examples)
            run.info[task] = {"model": "tfidf word 1-2 + char 2-5, LinearSVC", "train_rows": len(examples)}
        run.info[task]["train_seconds"] = time.perf_counter() - t0
        log(f"baseline {task}: trained on {len(examples)} examples in {run.info[task]['train_seconds']:.1f} s")
        for eset in (s for s in sets if s.task == task):
            t0 = time.perf_counter()
            pred = model.predict(eset.examples)
            seconds = time.perf_counter() - t0
            gold = [list(e.tags) for e in eset.examples] if task == "ner" else [e.label for e in eset.examples]
            run.results[eset.key] = finish(eset, SetResult(gold, pred, None, seconds),
                                           loaded.schema.tasks[task], n_boot)
    return run
