"""Run a predictor over labelled examples and score it (used by training's dev evaluation and by
`khabar eval`). Whole articles go through the predictor, so long ones use the service's windows."""
from __future__ import annotations

from dataclasses import dataclass

from khabar.eval.metrics import classification_metrics, entities_to_bio, ner_metrics

PRIMARY = {"topic": "macro_f1", "stance": "macro_f1", "ner": "micro_f1"}


@dataclass
class Scored:
    """Metrics plus per-example predictions (for reports and error analysis)."""

    metrics: dict
    gold: list
    pred: list
    probs: list


def score_examples(predictor, task: str, examples: list, labels: list[str] | None = None,
                   batch: int = 64) -> Scored:
    """Predict and score ``examples`` (readers' Topic/Stance/NerExample) for ``task``."""
    from khabar.models.predictor import LabelRequest

    gold, pred, probs = [], [], []
    for start in range(0, len(examples), batch):
        chunk = examples[start: start + batch]
        if task == "topic":
            reqs = [LabelRequest(f"{e.title}\n{e.text}" if e.title else e.text, (), ("topic",)) for e in chunk]
        elif task == "stance":
            reqs = [LabelRequest(e.text, (e.target,), ("stance",)) for e in chunk]
        else:
            reqs = [LabelRequest(" ".join(e.tokens), (), ("entities",)) for e in chunk]
        for ex, res in zip(chunk, predictor.label(reqs)):
            if task == "topic":
                gold.append(ex.label)
                pred.append(res["topic"]["label"])
                probs.append(res["topic"]["scores"])
            elif task == "stance":
                gold.append(ex.label)
                pred.append(res["stance"][0]["label"])
                probs.append(res["stance"][0]["scores"])
            else:
                spans, pos = [], 0
                for tok in ex.tokens:
                    spans.append((pos, pos + len(tok)))
                    pos += len(tok) + 1
                gold.append(list(ex.tags))
                pred.append(entities_to_bio(spans, res["entities"]))
                probs.append(res["entities"])
    if task == "ner":
        metrics = ner_metrics(gold, pred)
    else:
        metrics = classification_metrics(gold, pred, labels)
    return Scored(metrics, gold, pred, probs)


def primary_metric(task: str, metrics: dict) -> float:
    """The number a task is judged by: topic/stance macro-F1, NER micro-F1."""
    return float(metrics[PRIMARY[task]])
