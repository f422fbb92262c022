"""Metrics shared by training (dev scores each epoch) and `khabar eval`.

Classification: accuracy, macro-F1 and per-label precision/recall/F1/support. NER: strict
entity-level scores as seqeval's default, computed on CoNLL tokens after mapping predicted
character spans back onto the tokens.
"""
from __future__ import annotations

from typing import Sequence


def classification_metrics(gold: Sequence[str], pred: Sequence[str],
                           labels: Sequence[str] | None = None) -> dict:
    """``{"n", "accuracy", "macro_f1", "per_label": {label: {precision, recall, f1, support}}}``.

    Macro-F1 averages over ``labels`` (default: labels present in gold or predictions).
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    labels = list(labels) if labels else sorted(set(gold) | set(pred))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "per_label": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
    }


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


def entities_to_bio(token_spans: Sequence[tuple[int, int]], entities: Sequence[dict]) -> list[str]:
    """Tag tokens B-/I-/O from predicted character-span entities (``start``, ``end``, ``label``).

    A token belongs to an entity when its span lies inside the entity's span; the first such
    token is B-.
    """
    tags = ["O"] * len(token_spans)
    for ent in sorted(entities, key=lambda e: e["start"]):
        first = True
        for i, (s, e) in enumerate(token_spans):
            if s >= ent["start"] and e <= ent["end"] and tags[i] == "O":
                tags[i] = ("B-" if first else "I-") + ent["label"]
                first = False
    return tags


def ner_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """``{"n_sentences", "micro_f1", "per_type": {TYPE: {precision, recall, f1, support}}}``
    (strict entity match, seqeval's default mode)."""
    from seqeval.metrics import classification_report, f1_score

    gold, pred = [list(g) for g in gold], [list(p) for p in pred]
    if not gold:
        raise ValueError("no sentences to score")
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])}
                for k, v in report.items() if not k.endswith("avg")}
    return {"n_sentences": len(gold), "micro_f1": float(f1_score(gold, pred, zero_division=0)),
            "per_type": per_type}


def macro_labels(gold: Sequence[str], model_labels: Sequence[str]) -> list[str]:
    """The labels a file's macro-F1 averages over: the model's labels that occur in its gold.

    A label the file never uses (ANS has no ``unrelated``) would add an F1 of 0 and say nothing
    about the model; predicting it wrongly still costs recall on the true labels.
    """
    present = set(gold)
    return [lab for lab in model_labels if lab in present] or sorted(present)


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
