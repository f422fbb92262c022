"""Run a predictor over labelled examples and score it (used by training's dev evaluation and by
`khabar eval`). Whole articles go through the predictor, so long ones use the service's windows."""
from __future__ import annotations

from dataclasses import dataclass

from khabar.eval.metrics import classification_metrics, entities_to_bio, macro_labels, ner_metrics

PRIMARY = {"topic": "macro_f1", "stance": "macro_f1", "ner": "micro_f1"}


@dataclass
class Scored:
    """Metrics plus per-example predictions (for reports and error analysis)."""

    metrics: dict
    gold: list
    pred: list
    probs: list


def request_for(task: str, example) -> "LabelRequest":
    """The service request that labels one example: the whole article (title and body), one
    (target, text) pair, or a CoNLL sentence joined with spaces."""
    from khabar.models.predictor import LabelRequest

    if task == "topic":
        text = f"{example.title}\n{example.text}" if example.title else example.text
        return LabelRequest(text, (), ("topic",))
    if task == "stance":
        return LabelRequest(example.text, (example.target,), ("stance",))
    return LabelRequest(" ".join(example.tokens), (), ("entities",))


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
                   batch: int = 64, progress=None) -> Scored:
    """Predict and score ``examples`` (readers' Topic/Stance/NerExample) for ``task``;
    ``progress(n)`` is called per chunk of examples done."""
    gold, pred, probs = predict_examples(predictor, task, examples, batch, progress=progress)
    if task == "ner":
        metrics = ner_metrics(gold, pred)
    else:
        # Same label set as `khabar eval`: labels absent from a file's gold do not count.
        metrics = classification_metrics(gold, pred, macro_labels(gold, labels) if labels else None)
    return Scored(metrics, gold, pred, probs)


def primary_metric(task: str, metrics: dict) -> float:
    """The number a task is judged by: topic/stance macro-F1, NER micro-F1."""
    return float(metrics[PRIMARY[task]])
