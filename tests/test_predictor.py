"""The predictor: offsets point into what the user sent, batching changes nothing, long articles
are windowed, bad requests are refused clearly."""
from __future__ import annotations

import pytest

from khabar.models.predictor import Article, Predictor, arabic_ratio

ARTICLE = ("بَعْدَ الاتفاق العراقي الأمريكي، زار قائدُ فيلق القدس الإيراني بغداد والتقى رئيسَ الحكومة "
           "في قصر السلام، وقالت وزارة الخارجية إن الزيارة «تاريخيـــة» 🇮🇶 وإن شركة Google لم تعلق.")


@pytest.fixture(scope="module")
def predictor(tiny_loaded):
    return Predictor.from_loaded(tiny_loaded, batch_size=4)


def test_result_has_the_api_shape_and_probabilities(predictor):
    res = predictor.label_one(ARTICLE, ["الفصائل المسلحة ترفض الاتفاق", "الحكومة ترحب بالاتفاق"])
    assert set(res) == {"topic", "stance", "entities", "warnings", "model"}
    assert abs(sum(res["topic"]["scores"].values()) - 1) < 1e-5
    assert res["topic"]["label"] == max(res["topic"]["scores"], key=res["topic"]["scores"].get)
    assert [s["target"] for s in res["stance"]] == ["الفصائل المسلحة ترفض الاتفاق", "الحكومة ترحب بالاتفاق"]
    for s in res["stance"]:
        assert set(s["scores"]) == {"favor", "against", "neutral", "unrelated"}
        assert abs(sum(s["scores"].values()) - 1) < 1e-5
    assert res["model"]["name"] == "khabar"


@pytest.mark.parametrize("text", [
    ARTICLE,
    "مُحَمَّدٌ   يَزُورُ القاهرة\u200f اليوم، و\u0640\u0640\u0640المغرب غدا!!! https://example.com/x?y=1",
    "Google و Microsoft تستثمران في الرياض 2026 ... 😀😀",
])
def test_entity_offsets_index_the_submitted_text(predictor, text):
    res = predictor.label_one(text, tasks=["entities"])
    for ent in res["entities"]:
        assert text[ent["start"]: ent["end"]] == ent["text"]
        assert ent["text"] == ent["text"].strip() and ent["text"]
        assert 0 <= ent["score"] <= 1


def test_batched_output_equals_one_at_a_time(predictor):
    texts = [ARTICLE, "فاز الفريق في المباراة النهائية للدوري", ARTICLE * 6, "ارتفع سعر النفط في السوق"]
    reqs = [Article(t, ["الاتفاق"]) for t in texts]
    batched = predictor.label(reqs)
    single = [predictor.label([r])[0] for r in reqs]
    for b, s in zip(batched, single):
        assert b["topic"]["label"] == s["topic"]["label"]
        assert b["topic"]["score"] == pytest.approx(s["topic"]["score"], abs=1e-5)
        assert [(e["start"], e["end"], e["label"]) for e in b["entities"]] == \
               [(e["start"], e["end"], e["label"]) for e in s["entities"]]
        assert b["stance"][0]["scores"] == pytest.approx(s["stance"][0]["scores"], abs=1e-5)


def test_long_articles_are_windowed_and_entities_do_not_overlap(predictor):
    long_text = " ".join([ARTICLE] * 12)
    res = predictor.label_one(long_text, tasks=["entities", "topic"])
    spans = sorted((e["start"], e["end"]) for e in res["entities"])
    for (s1, e1), (s2, _) in zip(spans, spans[1:]):
        assert e1 <= s2, "entities merged across windows must not overlap"
    if spans:
        assert spans[-1][1] > len(long_text) // 2, "the end of a long article is labelled too"


def test_bad_requests_are_refused_with_a_reason(predictor):
    with pytest.raises(ValueError, match="unknown task"):
        predictor.label_one("نص", tasks=["sentiment"])
    res = predictor.label_one("The government welcomed the agreement on Monday.")
    assert any("not Arabic" in w for w in res["warnings"])
    assert arabic_ratio("مرحبا hello") == pytest.approx(5 / 10)
    assert arabic_ratio("123") == 0.0


def test_stance_asked_without_targets_is_warned_about(predictor):
    """The predictor gives the warning, so the service and batch jobs both do; not asking for
    tasks at all (every task the model has) is not asking for stance."""
    from khabar.models.predictor import NO_TARGETS_WARNING

    asked = [Article(ARTICLE, (), ("stance",)), Article(ARTICLE, (), ("topic", "actors")),
             Article(ARTICLE, (), ("topic",), actors=("الحكومة",)), Article(ARTICLE), Article(ARTICLE, ("الاتفاق",), ("stance",))]
    warned = [NO_TARGETS_WARNING in r["warnings"] for r in predictor.label(asked)]
    assert warned == [True, True, True, False, False]


def test_the_predictor_leaves_torch_threads_alone(tiny_loaded):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Predictor.from_loaded(tiny_loaded).label_one("نص قصير", tasks=["topic"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class CountingEngine:
    """The real engine, counting the windows each task is run on."""

    def __init__(self, model) -> None:
        from khabar.models.predictor import TorchEngine

        self.inner, self.rows = TorchEngine(model), {}

    def __call__(self, batch, tasks):
        for t in tasks:
            self.rows[t] = self.rows.get(t, 0) + int(batch["input_ids"].shape[0])
        return self.inner(batch, tasks)


def test_stance_reads_only_the_first_windows_the_model_was_trained_on(tiny_loaded):
    from dataclasses import replace

    schema = replace(tiny_loaded.schema, stance_windows=1, stance_select="first")
    engine = CountingEngine(tiny_loaded.model)
    capped = Predictor(None, tiny_loaded.tokenizer, schema, batch_size=4, engine=engine)
    long_text = " ".join([ARTICLE] * 12)
    other_tail = " ".join([ARTICLE] * 3 + ["فاز المنتخب الوطني بكأس البطولة بعد مباراة مثيرة"] * 30)
    targets = ["الاتفاق", "الحكومة"]

    first = capped.label_one(long_text, targets, tasks=["stance"])
    assert engine.rows == {"stance": 2}, "one window per target"
    # What lies past the first window cannot change a capped stance.
    second = capped.label_one(other_tail, targets, tasks=["stance"])
    for a, b in zip(first["stance"], second["stance"]):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)

    engine.rows.clear()
    uncapped = Predictor(None, tiny_loaded.tokenizer, replace(schema, stance_windows=None), batch_size=4,
                         engine=engine)
    uncapped.label_one(long_text, targets, tasks=["stance"])
    assert engine.rows["stance"] > 2 * 2, "without a cap every window of a long article is read"


def test_topic_pools_only_the_first_windows_when_capped(tiny_loaded):
    from dataclasses import replace

    schema = replace(tiny_loaded.schema, topic_windows=1)
    engine = CountingEngine(tiny_loaded.model)
    capped = Predictor(None, tiny_loaded.tokenizer, schema, batch_size=4, engine=engine)
    long_text = " ".join([ARTICLE] * 12)
    other_tail = " ".join([ARTICLE] * 3 + ["فاز المنتخب الوطني بكأس البطولة بعد مباراة مثيرة"] * 30)

    first = capped.label_one(long_text, tasks=["topic"])
    assert engine.rows == {"topic": 1}, "topic alone runs only the windows it pools"
    second = capped.label_one(other_tail, tasks=["topic"])
    assert first["topic"]["scores"] == pytest.approx(second["topic"]["scores"], abs=1e-5)
    # With entities asked too every window runs (NER reads them all), and topic still pools one.
    engine.rows.clear()
    both = capped.label_one(other_tail, tasks=["topic", "entities"])
    assert engine.rows["ner"] > 1
    assert both["topic"]["scores"] == pytest.approx(second["topic"]["scores"], abs=1e-5)

    uncapped = Predictor(tiny_loaded.model, tiny_loaded.tokenizer, tiny_loaded.schema, batch_size=4)
    assert uncapped.label_one(other_tail, tasks=["topic"])["topic"]["scores"] != \
        pytest.approx(second["topic"]["scores"], abs=1e-5), "without a cap the tail is pooled in"
    with pytest.raises(ValueError, match="topic_windows"):
        replace(tiny_loaded.schema, topic_windows=0)


def test_models_stored_without_a_stance_cap_get_their_training_window_count(tiny_loaded):
    import copy
    import json
    from dataclasses import replace

    from khabar.models.store import load_model, model_path, save_model

    trained = tiny_loaded.training["config"]["max_windows_per_example"]
    assert tiny_loaded.schema.stance_windows == trained  # new models carry it
    old = copy.deepcopy(tiny_loaded.model)
    old.schema = replace(old.schema, stance_windows=None)  # as saved before the field existed
    tag = save_model(old, tiny_loaded.tokenizer, training=tiny_loaded.training, name="khabar-old-schema")
    assert json.loads((model_path(tag)[1] / "schema.json").read_text())["stance_windows"] is None
    assert load_model(tag).schema.stance_windows == trained


def test_bio_decoding_never_emits_inside_without_its_begin():
    import numpy as np

    from khabar.models.predictor import bio_viterbi

    labels = ["O", "B-PERS", "I-PERS", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        probs = rng.dirichlet(np.full(len(labels), 0.3), size=n)
        tags = [labels[i] for i in bio_viterbi(probs, labels)]
        for k, tag in enumerate(tags):
            if tag.startswith("I-"):
                assert k > 0 and tags[k - 1] in ("B-" + tag[2:], tag), tags
    # argmax would say I-LOC after B-PERS; the best well-formed reading is kept
    probs = np.array([[0.1, 0.8, 0.02, 0.02, 0.02, 0.02, 0.02], [0.05, 0.05, 0.4, 0.0, 0.45, 0.0, 0.05]])
    assert [labels[i] for i in bio_viterbi(probs, labels)] == ["B-PERS", "I-PERS"]


class EvidenceEngine:
    """Stance logits from a rule over the window's tokens: 'against' where the window holds the
    statement, 'unrelated' elsewhere; a stand-in for a model that reads the statement correctly,
    so that only window choice and pooling are under test."""

    def __init__(self, marker_ids: set[int], labels: list[str]) -> None:
        self.marker_ids, self.labels = marker_ids, labels

    def __call__(self, batch, tasks):
        import numpy as np

        rows = []
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            hit = self.marker_ids <= {i for i, m in zip(ids, mask) if m}
            logits = np.full(len(self.labels), -2.0)
            logits[self.labels.index("against" if hit else "unrelated")] = 2.0
            rows.append(logits)
        return {"stance": np.stack(rows)}


@pytest.mark.parametrize("select,pool,expect_last", [
    ("evidence", "evidence", "against"),   # what new models do: the top window by evidence
    (None, "evidence", "against"),         # every window, pooled by evidence
    ("first", "evidence", "unrelated"),    # control: the first window only misses a late statement
    (None, "mean", "unrelated"),           # control: a plain mean lets unrelated paragraphs win
])
def test_stance_follows_the_statement_wherever_it_is(tiny_loaded, select, pool, expect_last):
    """Moving the stance-bearing sentence from the first paragraph to the last keeps the label
    when stance reads the evidence windows and pools by evidence; the controls show the old ways
    lose it."""
    from dataclasses import replace

    statement = "وأعلنت الفصائل المسلحة أنها ترفض نتائج الحوار الاستراتيجي رفضا قاطعا. "
    filler = "وقال مسؤول إن الزيارة تستمر يومين وتشمل لقاءات مع رئيس الحكومة في قصر السلام. " * 6
    target = "الفصائل المسلحة ترفض نتائج الحوار"
    tok = tiny_loaded.tokenizer
    marker = set(tok("رفضا قاطعا", add_special_tokens=False)["input_ids"])  # in the statement, not the target
    schema = replace(tiny_loaded.schema, stance_windows=1 if select else None,
                     stance_select=select or "first", stance_pool=pool)
    p = Predictor(None, tok, schema, engine=EvidenceEngine(marker, schema.tasks["stance"]))
    first = p.label_one(statement + filler * 3, [target], tasks=["stance"])["stance"][0]
    last = p.label_one(filler * 3 + statement, [target], tasks=["stance"])["stance"][0]
    assert last["label"] == expect_last
    if pool == "evidence":
        assert first["label"] == "against"
