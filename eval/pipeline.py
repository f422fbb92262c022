"""`khabar eval` from start to end: check everything, score the model, the baseline and the
compared model on the same files, and hand the result to the report writer.

Every check that can fail on user input (files, tags, tasks) runs before a model is loaded, so a
mistake costs a second, not a run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from khabar.eval.datasets import EvalInputError, EvalSet, plan_sources, read_sets
from khabar.eval.evaluate import SystemRun
from khabar.eval.trained_files import apply_trained_holdouts, apply_trained_target_maps, unfair_for_compare


@dataclass
class Evaluation:
    """Everything a report shows. Deltas are always ``model - reference``."""

    sets: list[EvalSet]
    model: SystemRun
    baseline: SystemRun | None = None
    other: SystemRun | None = None
    vs_baseline: dict | None = None
    vs_other: dict | None = None
    warnings: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def model_tasks(tag: str) -> tuple[str, dict[str, list[str]], dict]:
    """``(full tag, schema tasks, training record)`` read from the store without loading weights."""
    from khabar.models.store import ModelStoreError, model_path

    full, path = model_path(tag)
    try:
        tasks = json.loads((path / "schema.json").read_text(encoding="utf-8"))["tasks"]
        training = json.loads((path / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as err:
        raise ModelStoreError(f"model {full} is damaged or incomplete: {err}") from err
    return full, tasks, training


def prepare(model: str, *, topic: Path | None = None, stance: list[Path] = (), ner: list[Path] = (),
            data_dir: Path | None = None, compare: str | None = None,
            limit: int | None = None) -> tuple[list[EvalSet], dict]:
    """Check tags, tasks and files, and read the files; no model is loaded yet.

    Raises :class:`EvalInputError` or :class:`~khabar.models.store.ModelStoreError` (one line).
    """
    if limit is not None and limit < 1:
        raise EvalInputError(f"--limit must be at least 1 (got {limit})")
    full, tasks, training = model_tasks(model)
    plan = plan_sources(topic, list(stance), list(ner), data_dir, list(tasks), limit)
    if compare:
        other, other_tasks, other_training = model_tasks(compare)
        lacking = [t for t in plan if t not in other_tasks]
        if lacking:
            raise EvalInputError(f"--compare model {other} has no {', '.join(lacking)} task "
                                 f"(it has {', '.join(other_tasks)})")
    seed = int((training.get("config") or {}).get("seed", 13))
    unfair = unfair_for_compare(plan, training, other_training) if compare else {}
    renamed = apply_trained_target_maps(plan, training)
    holdouts = apply_trained_holdouts(plan, training)
    sets = read_sets(plan, tasks, seed)
    if compare:
        from khabar.eval.compare import check_same_labels

        check_same_labels(sets, tasks, other_tasks)
    settings = {"model": full, "compare": compare, "limit": limit, "seed": seed,
                "data_dir": str(data_dir) if data_dir else None, "target_maps": renamed,
                "holdouts": holdouts, "not_compared": unfair,
                "files": {s.key: {"path": s.path, "n": len(s.examples), "skipped": s.skipped,
                                  "repaired": s.repaired} for s in sets}}
    return sets, settings


def run_evaluation(model: str, sets: list[EvalSet], settings: dict, *, compare: str | None = None,
                   baseline: bool = False, n_boot: int = 1000, batch_size: int = 32,
                   progress: bool = True, log=print, stance_windows: str | None = None,
                   topic_windows: str | None = None, ner_decoding: str = "viterbi") -> Evaluation:
    """Score the model (and the baseline, and the compared model) on ``sets``.

    ``stance_windows`` and ``topic_windows`` ("all" or a number) and ``ner_decoding`` ("argmax")
    change how the model reads, for ablations; the defaults are what the service does.
    """
    from khabar.eval.compare import compare_runs
    from khabar.eval.evaluate import evaluate_model
    from khabar.models.store import load_model

    loaded = load_model(model)
    caps = {name: None if value == "all" else int(value)
            for name, value in (("stance_windows", stance_windows), ("topic_windows", topic_windows))
            if value is not None}
    if caps:
        from dataclasses import replace

        loaded.schema = replace(loaded.schema, **caps)
        loaded.model.schema = loaded.schema
    # engine: evaluate_model runs the PyTorch model as trained; the service's default int8 graph is
    # compared with it by the bench (README, "Measured results").
    settings = dict(settings, n_boot=n_boot, stance_windows=loaded.schema.stance_windows,
                    topic_windows=loaded.schema.topic_windows, ner_decoding=ner_decoding, engine="fp32")
    ev = Evaluation(sets, evaluate_model(loaded, sets, batch_size=batch_size, n_boot=n_boot, progress=progress,
                                         log=log, ner_decoding=ner_decoding), settings=settings)
    for eset in sets:
        if eset.unknown_labels:
            shown = ", ".join(f"{k} ({v})" for k, v in sorted(eset.unknown_labels.items()))
            ev.warnings.append(f"{eset.key}: {sum(eset.unknown_labels.values())} gold label(s) the model "
                               f"was not trained on were left out of scoring: {shown}")
    if baseline:
        from khabar.eval.baseline import evaluate_baseline

        ev.baseline = evaluate_baseline(loaded, sets, n_boot=n_boot, log=log)
        ev.warnings.extend(ev.baseline.warnings)
        ev.vs_baseline = compare_runs(sets, ev.baseline, ev.model, n_boot=n_boot)
    if compare:
        del loaded  # one model in memory at a time
        ev.other = evaluate_model(load_model(compare), sets, batch_size=batch_size, n_boot=n_boot,
                                  progress=progress, log=log)
        skipped = settings.get("not_compared") or {}
        for eset in sets:
            if eset.path in skipped:
                ev.warnings.append(f"{eset.key}: not compared with {compare}: {skipped[eset.path]}")
        fair = [s for s in sets if s.path not in skipped]
        ev.vs_other = compare_runs(fair, ev.other, ev.model, n_boot=n_boot)
    return ev
