"""Metrics of `khabar eval` against values computed by hand (no model: a fixed fake predictor)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from khabar.eval.datasets import EvalSet
from khabar.eval.evaluate import SetResult, finish
from khabar.eval.metrics import confusion_matrix, entity_counts, reliability
from khabar.eval.stats import (bootstrap_ci, classification_statistic, mcnemar, ner_statistic,
                               paired_bootstrap)
from khabar.training.readers import NerExample, StanceExample, TopicExample
from khabar.training.scoring import (classification_metrics, macro_labels, ner_metrics, predict_examples,
                                     single_label)

LABELS = ["economy", "sport", "culture"]
# Six articles: gold label, what the fake model predicts, and its confidence.
TOPIC = [("economy", "economy", 0.9), ("economy", "economy", 0.8), ("economy", "sport", 0.6),
         ("sport", "sport", 0.7), ("sport", "economy", 0.55), ("culture", "culture", 0.95)]


class FakePredictor:
    """Answers from a table keyed by text, in the predictor's result format."""

    def __init__(self, answers: dict[str, tuple[str, float]] | None = None,
                 entities: dict[str, list[dict]] | None = None) -> None:
        self.answers, self.entities = answers or {}, entities or {}

    def label(self, requests):
        out = []
        for r in requests:
            res = {"topic": None, "stance": [], "entities": [], "warnings": [], "model": {}}
            if "entities" in r.tasks:
                res["entities"] = self.entities.get(r.text, [])
            else:
                label, score = self.answers[r.text]
                labels = LABELS if label in LABELS else [label, "other", "none"]
                rest = (1 - score) / (len(labels) - 1)
                scores = {lab: (score if lab == label else rest) for lab in labels}
                if "topic" in r.tasks:
                    res["topic"] = {"label": label, "score": score, "scores": scores}
                else:
                    res["stance"] = [{"target": r.targets[0], "label": label, "score": score, "scores": scores}]
            out.append(res)
        return out


def _topic_set():
    examples = [TopicExample(id=f"t{i}", title="", text=f"مقال رقم {i}", label=g) for i, (g, _, _) in enumerate(TOPIC)]
    fake = FakePredictor({f"مقال رقم {i}": (p, c) for i, (_, p, c) in enumerate(TOPIC)})
    return EvalSet("topic", "six", "six.jsonl", examples), fake


def test_topic_metrics_by_hand():
    eset, fake = _topic_set()
    gold, pred, probs = predict_examples(fake, "topic", eset.examples, batch=4)
    m = finish(eset, SetResult(gold, pred, probs), LABELS, n_boot=200).metrics
    # economy: tp 2, fp 1 (a sport article), fn 1 -> P 2/3, R 2/3, F1 2/3
    # sport:   tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2;  culture: P = R = F1 = 1
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_label"]["economy"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_label"]["sport"]["f1"] == pytest.approx(0.5)
    assert m["per_label"]["culture"]["f1"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["confusion"]["matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]]
    lo, hi = m["ci95"]
    assert 0 <= lo <= m["macro_f1"] <= hi <= 1
    # Calibration: bins [0.5,0.6) holds 0.55 (wrong); [0.6,0.7) 0.6 (wrong); [0.7,0.8) 0.7 (right);
    # [0.8,0.9) 0.8 (right); [0.9,1] 0.9 and 0.95 (both right).
    ece = (abs(0 - 0.55) + abs(0 - 0.6) + abs(1 - 0.7) + abs(1 - 0.8) + 2 * abs(1 - 0.925)) / 6
    assert m["calibration"]["ece"] == pytest.approx(ece)
    assert [b["n"] for b in m["calibration"]["bins"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_a_classifier_that_gives_every_row_one_label_is_named():
    gold = ["against"] * 5 + ["favor"] * 3 + ["neutral"]
    assert single_label(classification_metrics(gold, ["against"] * 9)) == "against"
    # One row off the majority label is not a collapse, nor is a file with one gold label.
    assert single_label(classification_metrics(gold, ["against"] * 8 + ["favor"])) is None
    assert single_label(classification_metrics(["favor"] * 4, ["favor"] * 4)) is None
    # A label the file's macro-F1 leaves out (ANS has no `unrelated`) predicted for every row.
    assert single_label(classification_metrics(gold, ["unrelated"] * 9, ["against", "favor", "neutral"])) is None


def test_macro_f1_averages_only_labels_in_the_file():
    # The file has no "culture": it is not averaged in, but predicting it still costs recall.
    gold, pred = ["economy", "economy", "sport"], ["economy", "culture", "sport"]
    labels = macro_labels(gold, LABELS)
    assert labels == ["economy", "sport"]
    m = classification_metrics(gold, pred, labels)
    # economy: P 1, R 1/2, F1 2/3; sport: F1 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert confusion_matrix(gold, pred, labels) == [[1, 0, 1], [0, 1, 0]]


def test_resampling_statistic_equals_sklearn_and_seqeval():
    rng = np.random.default_rng(3)
    gold = list(rng.choice(LABELS, 50))
    pred = [g if rng.random() < 0.6 else rng.choice(LABELS) for g in gold]
    stat = classification_statistic(gold, pred, LABELS)
    assert stat() == pytest.approx(classification_metrics(gold, pred, LABELS)["macro_f1"])
    g = [["B-PERS", "I-PERS", "O", "B-LOC"], ["O", "B-ORG"], ["B-LOC", "O"]]
    p = [["B-PERS", "O", "O", "B-LOC"], ["O", "B-ORG"], ["O", "B-LOC"]]
    assert ner_statistic(g, p)() == pytest.approx(ner_metrics(g, p)["micro_f1"])


def test_ner_metrics_by_hand_through_the_predictor_path():
    # Sentence 1: gold PERS "علي حسن" and LOC "بغداد"; predicted PERS "علي" only (wrong span).
    # Sentence 2: gold ORG "الأمم المتحدة"; predicted exactly.
    s1 = NerExample("n1", ("زار", "علي", "حسن", "بغداد"), ("O", "B-PERS", "I-PERS", "B-LOC"))
    s2 = NerExample("n2", ("قالت", "الأمم", "المتحدة"), ("O", "B-ORG", "I-ORG"))
    fake = FakePredictor(entities={
        "زار علي حسن بغداد": [{"text": "علي", "label": "PERS", "start": 4, "end": 7, "score": 0.9}],
        "قالت الأمم المتحدة": [{"text": "الأمم المتحدة", "label": "ORG", "start": 5, "end": 18, "score": 0.9}],
    })
    eset = EvalSet("ner", "two", "two.conll", [s1, s2])
    gold, pred, _ = predict_examples(fake, "ner", eset.examples)
    assert pred == [["O", "B-PERS", "O", "O"], ["O", "B-ORG", "I-ORG"]]
    m = finish(eset, SetResult(gold, pred), [], n_boot=100).metrics
    # tp 1 (ORG), predicted 2, gold 3 -> P 1/2, R 1/3, F1 2*1/(2+3) = 0.4
    assert m["micro_f1"] == pytest.approx(0.4)
    assert m["n_sentences"] == 2
    assert m["per_type"]["PERS"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["per_type"]["ORG"]["f1"] == pytest.approx(1.0)
    assert entity_counts(gold[0], pred[0]) == (0, 1, 2)


def test_reliability_perfect_and_edges():
    cal = reliability([1.0, 1.0, 0.0], [True, True, False], bins=4)
    assert cal["ece"] == pytest.approx(0.0)
    assert [b["n"] for b in cal["bins"]] == [1, 0, 0, 2]
    with pytest.raises(ValueError):
        reliability([], [])


def test_mcnemar_and_paired_bootstrap_by_hand():
    gold = ["a"] * 12
    a = ["a"] * 2 + ["b"] * 10  # right on 2
    b = ["a"] * 12  # right on all: b alone right on 10, a alone on 0
    mc = mcnemar(gold, a, b)
    assert (mc["a_only"], mc["b_only"]) == (0, 10)
    assert mc["p"] == pytest.approx(2 * 0.5 ** 10)  # exact two-sided binomial
    assert mcnemar(gold, a, a)["p"] == 1.0
    labels = ["a", "b"]
    sa, sb = classification_statistic(gold, a, labels), classification_statistic(gold, b, labels)
    test = paired_bootstrap(sa, sb, n_boot=300)
    assert test["delta"] == pytest.approx(sb() - sa())
    assert test["delta"] > 0 and test["ci95"][0] > 0 and test["p"] < 0.01
    same = paired_bootstrap(sa, sa, n_boot=50)
    assert same == {"delta": 0.0, "ci95": [0.0, 0.0], "p": 1.0}
    ci = bootstrap_ci(sb, n_boot=50)
    assert not any(math.isnan(x) for x in ci)


def test_stance_uses_target_and_text():
    ex = [StanceExample("s1", "الاتفاق", "نص يؤيد الاتفاق", "favor")]
    seen = []

    class Spy(FakePredictor):
        def label(self, requests):
            seen.extend(requests)
            return super().label(requests)

    gold, pred, probs = predict_examples(Spy({"نص يؤيد الاتفاق": ("favor", 0.8)}), "stance", ex)
    assert seen[0].targets == ("الاتفاق",) and seen[0].tasks == ("stance",)
    assert gold == pred == ["favor"] and probs[0]["favor"] == pytest.approx(0.8)


def test_official_mawqif_metric_by_hand():
    from khabar.eval.metrics import official_metric

    gold = ["favor", "favor", "against", "against", "neutral", "neutral"]
    pred = ["favor", "against", "against", "neutral", "neutral", "favor"]
    # favor: P 1/2, R 1/2 -> F1 0.5; against: P 1/2, R 1/2 -> F1 0.5; neutral (Mawqif's none) is left out
    m = official_metric("mawqif", gold, pred)
    assert m["value"] == pytest.approx(0.5)
    assert "favor and against" in m["metric"]
    pred2 = ["favor", "favor", "against", "against", "favor", "against"]  # none never predicted
    # favor: P 2/3 R 1 -> 0.8; against the same -> mean 0.8 (a 3-class macro-F1 would be 0.533)
    assert official_metric("mawqif", gold, pred2)["value"] == pytest.approx(0.8)
    assert official_metric("ant21", gold, pred) is None
    # ANS: macro over its three labels even when one is never predicted
    assert official_metric("ans", ["favor", "against", "neutral"], ["favor", "against", "against"])["value"] == \
        pytest.approx((1 + 2 / 3 + 0) / 3)
