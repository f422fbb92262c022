"""Uncertainty of metrics: bootstrap 95 % intervals, paired bootstrap and McNemar tests.

Each system's predictions on a file are turned into a :class:`Statistic`, a callable that scores
any resample of the file's examples quickly (confusion counts for macro-F1, per-sentence entity
counts for micro-F1), so a thousand resamples take well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from khabar.eval.metrics import entity_counts


@dataclass
class Statistic:
    """The primary metric of one system on one file, computable on any index resample."""

    kind: str  # "macro_f1" or "micro_f1"
    n: int
    gold: np.ndarray | None = None  # classification: label ids
    pred: np.ndarray | None = None
    n_labels: int = 0  # macro-F1 averages over ids 0..n_labels-1 (other ids only count as errors)
    counts: np.ndarray | None = None  # ner: (n, 3) tp, predicted, gold per sentence

    def __call__(self, idx: np.ndarray | None = None) -> float:
        if self.kind == "micro_f1":
            c = self.counts if idx is None else self.counts[idx]
            tp, npred, ngold = c.sum(axis=0)
            return float(2 * tp / (npred + ngold)) if npred + ngold else 0.0
        g = self.gold if idx is None else self.gold[idx]
        p = self.pred if idx is None else self.pred[idx]
        k = self.n_labels
        size = k + 1  # the extra id collects predictions outside the averaged labels
        cm = np.bincount(g * size + p, minlength=size * size).reshape(size, size)[:k]
        tp = cm[np.arange(k), np.arange(k)]
        fn = cm.sum(axis=1) - tp
        fp = cm[:, :k].sum(axis=0) - tp
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
        return float(f1.mean())


def classification_statistic(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> Statistic:
    """Macro-F1 over ``labels`` (predictions of other labels count only as errors)."""
    index = {lab: i for i, lab in enumerate(labels)}
    other = len(labels)
    g = np.array([index.get(x, other) for x in gold], dtype=np.int64)
    p = np.array([index.get(x, other) for x in pred], dtype=np.int64)
    return Statistic("macro_f1", len(g), gold=g, pred=p, n_labels=len(labels))


def ner_statistic(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Statistic:
    """Strict entity micro-F1 from per-sentence counts (equal to seqeval's on the whole file)."""
    counts = np.array([entity_counts(g, p) for g, p in zip(gold, pred)], dtype=np.int64).reshape(-1, 3)
    return Statistic("micro_f1", len(counts), counts=counts)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(stat: Statistic, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval ``[lo, hi]`` of ``stat`` over resampled examples."""
    if stat.n == 0:
        return [float("nan"), float("nan")]
    values = np.array([stat(idx) for idx in _resamples(stat.n, n_boot, seed)])
    a = (1 - level) / 2
    return [float(np.quantile(values, a)), float(np.quantile(values, 1 - a))]


def paired_bootstrap(a: Statistic | Sequence[Statistic], b: Statistic | Sequence[Statistic],
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Difference ``b - a`` on the same resamples: ``{"delta", "ci95", "p"}``.

    Lists of statistics (one per file of a task) are averaged, each file resampled on its own.
    ``p`` is two-sided: twice the share of resampled differences on the other side of zero
    (capped at 1), the paired bootstrap test of Koehn (2004) / Berg-Kirkpatrick et al. (2012).
    """
    a_list = list(a) if isinstance(a, (list, tuple)) else [a]
    b_list = list(b) if isinstance(b, (list, tuple)) else [b]
    if [s.n for s in a_list] != [s.n for s in b_list]:
        raise ValueError("paired bootstrap needs both systems scored on the same examples")
    delta = float(np.mean([sb() - sa() for sa, sb in zip(a_list, b_list)]))
    diffs = np.zeros(n_boot)
    for k, (sa, sb) in enumerate(zip(a_list, b_list)):
        for i, idx in enumerate(_resamples(sa.n, n_boot, seed + k)):
            diffs[i] += sb(idx) - sa(idx)
    diffs /= len(a_list)
    lo_q = (1 - level) / 2
    below, above = float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))
    return {"delta": delta, "ci95": [float(np.quantile(diffs, lo_q)), float(np.quantile(diffs, 1 - lo_q))],
            "p": min(1.0, 2 * min(below, above))}


def mcnemar(gold: Sequence[str], pred_a: Sequence[str], pred_b: Sequence[str]) -> dict:
    """Exact McNemar test on the examples exactly one of two classifiers gets right.

    Returns ``{"a_only", "b_only", "p"}``; ``p`` is the two-sided binomial p-value (1.0 when
    the two never disagree on correctness).
    """
    from scipy.stats import binomtest

    a_ok = np.array([g == p for g, p in zip(gold, pred_a)])
    b_ok = np.array([g == p for g, p in zip(gold, pred_b)])
    a_only, b_only = int(np.sum(a_ok & ~b_ok)), int(np.sum(b_ok & ~a_ok))
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p": p}
