"""Metrics only an evaluation reports: each dataset's published metric, confusion matrices,
calibration, and per-sentence entity counts for the bootstrap.

The task metrics that training also needs (accuracy, macro-F1, seqeval NER F1) are in
:mod:`khabar.training.scoring`, the layer below.
"""
from __future__ import annotations

from typing import Sequence


# How each dataset's paper scores it, in khabar's unified stance labels: Mawqif averages the F1 of
# favor and against (its "none" left out); ANS and Baly use macro-F1 over all of their own labels.
OFFICIAL = {
    "mawqif": ("mean F1 of favor and against", ("favor", "against")),
    "ans": ("macro-F1 over agree, disagree, other", ("favor", "against", "neutral")),
    "baly2018": ("macro-F1 over agree, disagree, discuss, unrelated", ("favor", "against", "neutral", "unrelated")),
}


def official_metric(dataset: str, gold: Sequence[str], pred: Sequence[str]) -> dict | None:
    """``{"metric", "value"}``: the dataset's published metric, or None for other datasets.

    Unlike the unified macro-F1 (labels present in the file's gold), this always averages over
    the labels the paper names, so a figure can be held against the paper's.
    """
    if dataset not in OFFICIAL:
        return None
    from sklearn.metrics import f1_score

    name, labels = OFFICIAL[dataset]
    value = f1_score(list(gold), list(pred), labels=list(labels), average="macro", zero_division=0)
    return {"metric": name, "value": float(value)}


def confusion_matrix(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts with gold labels as rows and predictions as columns, both in ``labels`` order.

    Predictions outside ``labels`` (a label the file does not use) go to an extra last column;
    gold labels outside ``labels`` are not counted.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    known = set(labels)
    if known.isdisjoint(gold):  # sklearn refuses a gold with none of the labels; nothing to count
        return [[0] * (len(labels) + 1) for _ in labels]
    # One name, not among the labels, for every prediction outside them: the extra column.
    other = "\0other"
    pred = [p if p in known else other for p in pred]
    # sklearn drops pairs whose gold is not in its labels, so the `other` row stays empty.
    return sk_confusion_matrix(list(gold), pred, labels=[*labels, other])[:-1].tolist()


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict:
    """Calibration of top-label confidences: ``{"ece", "bins": [{lo, hi, n, confidence, accuracy}]}``.

    Equal-width bins over [0, 1]; ECE is the bin-size weighted mean of |accuracy - confidence|
    (Guo et al. 2017). Empty bins are listed with ``n`` 0 and no averages.
    """
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} outcomes")
    if not confidence:
        raise ValueError("no predictions to calibrate")
    edges = [i / bins for i in range(bins + 1)]
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidence, correct):
        # Bins are [lo, hi); a confidence of exactly 1.0 belongs to the last one.
        b = min(bins - 1, max(0, int(c * bins)))
        groups[b].append((float(c), bool(ok)))
    total = len(confidence)
    ece, out = 0.0, []
    for b, group in enumerate(groups):
        entry = {"lo": edges[b], "hi": edges[b + 1], "n": len(group), "confidence": None, "accuracy": None}
        if group:
            conf = sum(c for c, _ in group) / len(group)
            acc = sum(ok for _, ok in group) / len(group)
            entry.update(confidence=conf, accuracy=acc)
            ece += len(group) / total * abs(acc - conf)
        out.append(entry)
    return {"ece": ece, "bins": out}


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """``{(type, first token, last token)}`` of a BIO sequence, as seqeval reads it."""
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(list(tags)))


def entity_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    """``(true positives, predicted, gold)`` entities of one sentence under strict matching."""
    g, p = entity_spans(gold), entity_spans(pred)
    return len(g & p), len(p), len(g)
