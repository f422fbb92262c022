"""Score one system (a stored model, or a baseline) on evaluation sets.

A :class:`SetResult` keeps the per-example predictions next to the metrics, so reports can draw
confusion matrices and calibration, pick the worst errors, and tests can bootstrap and compare.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from khabar.eval.datasets import EvalSet
from khabar.eval.metrics import confusion_matrix, official_metric, reliability
from khabar.eval.stats import Statistic, bootstrap_ci, classification_statistic, ner_statistic
from khabar.training.scoring import classification_metrics, macro_labels, ner_metrics


@dataclass
class SetResult:
    """One system's predictions on one :class:`EvalSet` and their metrics.

    ``probs`` holds score dicts (topic, stance) or predicted entity dicts (ner; model only).
    """

    gold: list
    pred: list
    probs: list | None = None
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)

    @property
    def confidence(self) -> list[float] | None:
        """Top-label probability per example (classification with scores only)."""
        if not self.probs or not isinstance(self.probs[0], dict):
            return None
        return [max(p.values()) for p in self.probs]


@dataclass
class SystemRun:
    """All sets scored by one system; ``name`` is a model tag or ``"baseline"``."""

    name: str
    results: dict[str, SetResult] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def throughput(self) -> dict:
        """Articles (topic articles, stance pairs, NER sentences) per second of prediction."""
        n = sum(len(r.gold) for r in self.results.values())
        seconds = sum(r.seconds for r in self.results.values())
        return {"articles_per_s": n / seconds if seconds > 0 else 0.0, "n": n, "seconds": seconds}


def statistic(eset: EvalSet, result: SetResult, model_labels: list[str] | None = None) -> Statistic:
    """The primary metric of ``result`` as a resamplable statistic."""
    if eset.task == "ner":
        return ner_statistic(result.gold, result.pred)
    labels = result.metrics.get("labels") or macro_labels(result.gold, model_labels or [])
    return classification_statistic(result.gold, result.pred, labels)


def finish(eset: EvalSet, result: SetResult, model_labels: list[str], n_boot: int = 1000,
           seed: int = 0) -> SetResult:
    """Fill ``result.metrics``: the issue's metrics plus interval, confusion and calibration."""
    if eset.task == "ner":
        m = ner_metrics(result.gold, result.pred)
    else:
        labels = macro_labels(result.gold, model_labels)
        m = classification_metrics(result.gold, result.pred, labels)
        m["labels"] = labels
        m["confusion"] = {"labels": labels, "matrix": confusion_matrix(result.gold, result.pred, labels)}
        official = official_metric(eset.name, result.gold, result.pred)
        if official is not None:
            m["official"] = official
        conf = result.confidence
        if conf is not None:
            m["calibration"] = reliability(conf, [g == p for g, p in zip(result.gold, result.pred)])
    result.metrics = m
    m["ci95"] = bootstrap_ci(statistic(eset, result), n_boot=n_boot, seed=seed)
    if eset.unknown_labels:
        m["unknown_labels"] = {"n": sum(eset.unknown_labels.values()), "labels": dict(eset.unknown_labels)}
    return result


def evaluate_model(loaded, sets: list[EvalSet], *, batch_size: int = 32, n_boot: int = 1000,
                   progress: bool = True, log=print, ner_decoding: str = "viterbi") -> SystemRun:
    """Label every set with the stored model through the service's predictor and score it."""
    from tqdm.auto import tqdm

    from khabar.models.predictor import Predictor
    from khabar.training.scoring import predict_examples

    predictor = Predictor.from_loaded(loaded, batch_size=batch_size, keep_parts=bool(loaded.hybrid),
                                      ner_decoding=ner_decoding)
    run = SystemRun(loaded.tag, info={"tag": loaded.tag})
    for eset in sets:
        parts: list = []
        with tqdm(total=len(eset.examples), desc=f"{loaded.tag} {eset.key}", unit="ex",
                  disable=not progress, leave=False) as bar:
            t0 = time.perf_counter()
            gold, pred, probs = predict_examples(predictor, eset.task, eset.examples,
                                                 batch=max(batch_size, 16), progress=bar.update, parts=parts)
            seconds = time.perf_counter() - t0
        result = finish(eset, SetResult(gold, pred, probs, seconds), loaded.schema.tasks[eset.task], n_boot)
        if any(parts):
            result.metrics["variants"] = variant_metrics(eset, gold, pred, parts, loaded.schema.tasks[eset.task])
        run.results[eset.key] = result
        log(f"{loaded.tag} {eset.key}: {_headline(eset.task, result.metrics)} "
            f"({len(gold)} in {seconds:.1f} s)")
    return run


VARIANTS = ("encoder", "linear", "blend", "blend+offsets")


def variant_metrics(eset: EvalSet, gold: list, pred: list, parts: list[dict], model_labels: list[str]) -> dict:
    """Macro-F1 (and the dataset's official metric) of each part of a hybrid head on one set:
    encoder alone, linear part alone, blend without offsets, and the served blend with offsets."""
    labels = macro_labels(gold, model_labels)
    out = {}
    for name in VARIANTS:
        guess = pred if name == "blend+offsets" else [max(p[name], key=p[name].get) for p in parts]
        entry = {"macro_f1": classification_metrics(gold, guess, labels)["macro_f1"]}
        official = official_metric(eset.name, gold, guess)
        if official is not None:
            entry["official"] = official["value"]
        out[name] = entry
    return out


def _headline(task: str, m: dict) -> str:
    key = "micro_f1" if task == "ner" else "macro_f1"
    return f"{key} {m[key]:.3f}"
