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
