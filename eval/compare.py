"""Two systems on the same files: per-metric deltas with paired significance.

:func:`compare_runs` works on scored runs (the report uses it for model vs baseline and model vs
``--compare``, and `khabar retrain` for candidate vs base); :func:`compare_models` asks the
retraining gate's question from Python: two tags and some files in, per-file and per-task primary
deltas with p-values out.
"""
from __future__ import annotations

from pathlib import Path

from khabar.eval.datasets import EvalSet
from khabar.eval.evaluate import SystemRun, statistic
from khabar.eval.stats import mcnemar, paired_bootstrap
from khabar.training.scoring import PRIMARY


def compare_runs(sets: list[EvalSet], base: SystemRun, candidate: SystemRun, *, n_boot: int = 1000,
                 seed: int = 0) -> dict:
    """``{"sets": {key: ...}, "tasks": {task: ...}}`` for ``candidate - base``.

    Per file: primary metric of both, ``delta``, paired-bootstrap ``ci95`` and ``p_bootstrap``,
    accuracy delta and the exact McNemar ``p_mcnemar`` (classification only). Per task: the mean
    of its files' primary deltas with a joint paired bootstrap (each file resampled on its own).
    Sets one of the runs lacks (a skipped baseline) are left out.
    """
    out: dict = {"base": base.name, "candidate": candidate.name, "sets": {}, "tasks": {}}
    by_task: dict[str, tuple[list, list]] = {}
    for eset in sets:
        a, b = base.results.get(eset.key), candidate.results.get(eset.key)
        if a is None or b is None:
            continue
        metric = PRIMARY[eset.task]
        # Both systems averaged over the same labels, so the delta compares like with like.
        sa, sb = statistic(eset, a), statistic(eset, b)
        test = paired_bootstrap(sa, sb, n_boot=n_boot, seed=seed)
        entry = {"task": eset.task, "metric": metric, "base": a.metrics[metric], "candidate": b.metrics[metric],
                 "delta": b.metrics[metric] - a.metrics[metric], "ci95": test["ci95"],
                 "p_bootstrap": test["p"]}
        if eset.task != "ner":
            entry["accuracy_delta"] = b.metrics["accuracy"] - a.metrics["accuracy"]
            mc = mcnemar(a.gold, a.pred, b.pred)
            entry.update(p_mcnemar=mc["p"], base_only_right=mc["a_only"], candidate_only_right=mc["b_only"])
        out["sets"][eset.key] = entry
        pair = by_task.setdefault(eset.task, ([], []))
        pair[0].append(sa)
        pair[1].append(sb)
    for task, (sa_list, sb_list) in by_task.items():
        test = paired_bootstrap(sa_list, sb_list, n_boot=n_boot, seed=seed)
        out["tasks"][task] = {"metric": PRIMARY[task], "delta": test["delta"], "ci95": test["ci95"],
                              "p_bootstrap": test["p"], "files": len(sa_list)}
    return out


def compare_models(base_tag: str, candidate_tag: str, *, topic: Path | None = None,
                   stance: list[Path] = (), ner: list[Path] = (), data_dir: Path | None = None,
                   limit: int | None = None, n_boot: int = 1000, batch_size: int = 32,
                   progress: bool = False, log=lambda m: None) -> dict:
    """Evaluate two stored models on the same files; the retraining gate's question.

    Only tasks both models have are compared. Returns :func:`compare_runs`'s dict plus
    ``"metrics": {tag: {key: metrics}}``; ``result["tasks"][task]["delta"]`` is the candidate's
    mean primary-metric gain and ``["p_bootstrap"]`` its two-sided p-value.
    Raises :class:`~khabar.eval.datasets.EvalInputError` for bad files and
    :class:`~khabar.models.store.ModelStoreError` for unknown tags.
    """
    from khabar.eval.datasets import EvalInputError, plan_sources, read_sets
    from khabar.eval.evaluate import evaluate_model
    from khabar.eval.trained_files import apply_trained_holdouts, apply_trained_target_maps, unfair_for_compare
    from khabar.models.store import load_model

    base, cand = load_model(base_tag), load_model(candidate_tag)
    shared = [t for t in base.schema.tasks if t in cand.schema.tasks]
    if not shared:
        raise EvalInputError(f"{base.tag} and {cand.tag} have no task in common")
    plan = plan_sources(topic, stance, ner, data_dir, shared, limit)
    seed = int((base.training.get("config") or {}).get("seed", 13))
    # Scored as `khabar eval` scores the base: its target names and its held-out split; a file
    # whose split the candidate drew otherwise is left out (the candidate trained on its rows).
    unfair = unfair_for_compare(plan, base.training, cand.training)
    apply_trained_target_maps(plan, base.training)
    apply_trained_holdouts(plan, base.training)
    sets = [s for s in read_sets(plan, base.schema.tasks, seed) if s.path not in unfair]
    if not sets:
        raise EvalInputError(f"no file can be compared fairly: {'; '.join(unfair.values())}")
    check_same_labels(sets, base.schema.tasks, cand.schema.tasks)
    runs = [evaluate_model(m, sets, batch_size=batch_size, n_boot=n_boot, progress=progress, log=log)
            for m in (base, cand)]
    out = compare_runs(sets, runs[0], runs[1], n_boot=n_boot)
    out["not_compared"] = unfair
    out["metrics"] = {r.name: {k: v.metrics for k, v in r.results.items()} for r in runs}
    return out


def check_same_labels(sets: list[EvalSet], a: dict, b: dict) -> None:
    """Files are filtered to the first model's labels; the second must know them too."""
    from khabar.eval.datasets import EvalInputError

    for eset in sets:
        if eset.task == "ner":
            continue
        missing = sorted({e.label for e in eset.examples} - set(b[eset.task]))
        if missing:
            raise EvalInputError(f"{eset.key}: the compared model lacks label(s) {', '.join(missing)} "
                                 f"that {eset.path} uses")
