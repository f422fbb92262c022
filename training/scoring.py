"""How a model is scored on labelled examples: the task metrics, and a predictor run over examples.

Classification: accuracy, macro-F1 and per-label precision/recall/F1/support. NER: strict
entity-level scores as seqeval's default, computed on CoNLL tokens after mapping predicted
character spans back onto the tokens. Whole articles go through the predictor, so long ones use
the service's windows.

Training scores its dev sets with this every epoch; :mod:`khabar.eval` builds on it (intervals,
comparisons, reports), which is why it lives here, in the lower of the two layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

PRIMARY = {"topic": "macro_f1", "stance": "macro_f1", "ner": "micro_f1"}


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


def macro_labels(gold: Sequence[str], model_labels: Sequence[str]) -> list[str]:
    """The labels a file's macro-F1 averages over: the model's labels that occur in its gold.

    A label the file never uses (ANS has no ``unrelated``) would add an F1 of 0 and say nothing
    about the model; predicting it wrongly still costs recall on the true labels.
    """
    present = set(gold)
    return [lab for lab in model_labels if lab in present] or sorted(present)


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


@dataclass
class ScoredExamples:
    """Metrics plus per-example predictions (for reports and error analysis)."""

    metrics: dict
    gold: list
    pred: list
    probs: list


def request_for(task: str, example) -> "Article":
    """The predictor input that labels one example: the whole article (title and body), one
    (target, text) pair, or a CoNLL sentence joined with spaces."""
    from khabar.models.predictor import Article

    if task == "topic":
        text = f"{example.title}\n{example.text}" if example.title else example.text
        return Article(text, (), ("topic",))
    if task == "stance":
        return Article(example.text, (example.target,), ("stance",))
    return Article(" ".join(example.tokens), (), ("entities",))


def token_spans(tokens) -> list[tuple[int, int]]:
    """Character spans of CoNLL tokens in their space-joined sentence."""
    spans, pos = [], 0
    for tok in tokens:
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return spans


def predict_examples(predictor, task: str, examples: list, batch: int = 64,
                     progress=None, parts: list | None = None) -> tuple[list, list, list]:
    """``(gold, pred, probs)`` for ``examples``: labels and score dicts (topic, stance) or BIO
    tags per CoNLL token and the predicted entities (ner). ``progress(n)`` is called per chunk;
    ``parts``, when given, receives each result's per-part scores (a predictor with
    ``keep_parts``)."""
    gold, pred, probs = [], [], []
    for start in range(0, len(examples), batch):
        chunk = examples[start: start + batch]
        for ex, res in zip(chunk, predictor.label([request_for(task, e) for e in chunk])):
            if task in ("topic", "stance"):
                out = res["topic"] if task == "topic" else res["stance"][0]
                gold.append(ex.label)
                pred.append(out["label"])
                probs.append(out["scores"])
                if parts is not None:
                    parts.append(out.get("parts", {}))
            else:
                gold.append(list(ex.tags))
                pred.append(entities_to_bio(token_spans(ex.tokens), res["entities"]))
                probs.append(res["entities"])
        if progress is not None:
            progress(len(chunk))
    return gold, pred, probs


def score_examples(predictor, task: str, examples: list, labels: list[str] | None = None,
                   batch: int = 64, progress=None) -> ScoredExamples:
    """Predict and score ``examples`` (readers' Topic/Stance/NerExample) for ``task``;
    ``progress(n)`` is called per chunk of examples done."""
    gold, pred, probs = predict_examples(predictor, task, examples, batch, progress=progress)
    if task == "ner":
        metrics = ner_metrics(gold, pred)
    else:
        # Same label set as `khabar eval`: labels absent from a file's gold do not count.
        metrics = classification_metrics(gold, pred, macro_labels(gold, labels) if labels else None)
    return ScoredExamples(metrics, gold, pred, probs)


def single_label(metrics: dict) -> str | None:
    """The one label a classifier gave every row of a scored set, else None.

    Read from classification metrics alone: ``label`` was predicted for support / precision
    rows, and for every row when that is ``n`` (its recall is then 1). A head that collapsed like this (ANS trained alone at the
    three-task learning rate did, session 15) scores its dev set with the majority label's F1
    only, and training should say so rather than store it quietly. Needs two gold labels.
    """
    per_label = {lab: v for lab, v in metrics.get("per_label", {}).items() if v["support"] > 0}
    if len(per_label) < 2:
        return None
    for lab, v in per_label.items():
        if v["recall"] == 1.0 and v["precision"] > 0 and round(v["support"] / v["precision"]) == metrics["n"]:
            return lab
    return None


def primary_metric(task: str, metrics: dict) -> float:
    """The number a task is judged by: topic/stance macro-F1, NER micro-F1."""
    return float(metrics[PRIMARY[task]])
