"""Hybrid heads: storage without pickle, tamper refusal, the blend in the predictor, offsets."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from khabar.models.hybrid import (LONG_TEXT_CHARS, HashedTfidf, HybridError, HybridHead, LinearPart, Stacker,
                                  encoder_only, family_of, fields_for, load_hybrid, save_hybrid)
from khabar.training.hybrid import MARGIN, bootstrap_win_rate, choose, fit_family, fit_linear, fit_offsets, group_macro_f1
from khabar.training.readers import StanceExample, TopicExample

SPORT = ["فاز الفريق بالمباراة النهائية وسجل المهاجم هدفين", "تأهل المنتخب إلى كأس العالم بعد الفوز",
         "خسر النادي المباراة أمام منافسه في الدوري", "أحرز اللاعب هدف الفوز في الدقيقة الأخيرة"]
ECONOMY = ["ارتفع سعر الفائدة وتراجع التضخم في الربع الأول", "أعلن البنك المركزي خفض سعر الصرف",
           "سجلت البورصة ارتفاعا في أسهم الشركات الكبرى", "تراجعت أسعار النفط في الأسواق العالمية"]


def topic_rows() -> list[TopicExample]:
    rows = [TopicExample(id=f"s{i}", title="", text=t, label="sport") for i, t in enumerate(SPORT)]
    return rows + [TopicExample(id=f"e{i}", title="", text=t, label="economy") for i, t in enumerate(ECONOMY)]


@pytest.fixture
def topic_head() -> HybridHead:
    linear = fit_linear("topic", topic_rows(), ["economy", "sport"])
    stacker = Stacker(np.hstack([np.eye(2), np.eye(2)]), np.zeros(2), np.array([0.0, 0.3]))
    return HybridHead(linear, {"all": stacker}, {"note": "test"})


def test_linear_part_learns_topic_words(topic_head):
    p = topic_head.linear.proba(fields_for("topic", ["سجل المهاجم هدفا في المباراة", "ارتفع سعر النفط والفائدة"]))
    assert p.shape == (2, 2)
    assert p[0].argmax() == 1 and p[1].argmax() == 0


def test_round_trip_without_pickle(tmp_path, topic_head):
    save_hybrid({"topic": topic_head}, tmp_path)
    npz = tmp_path / "hybrid" / "topic.npz"
    with zipfile.ZipFile(npz) as z:  # plain .npy arrays only: nothing that needs pickle to read
        for name in z.namelist():
            with z.open(name) as fh:
                header = fh.read(128)
            assert b"'descr': '|O'" not in header, name
    loaded = load_hybrid(tmp_path)["topic"]
    texts = fields_for("topic", ["فاز المنتخب بالمباراة", "خفض البنك سعر الفائدة"])
    np.testing.assert_allclose(loaded.linear.proba(texts), topic_head.linear.proba(texts), rtol=1e-5)
    np.testing.assert_allclose(loaded.stackers["all"].offsets, [0.0, 0.3])
    assert loaded.info == {"note": "test"}


def test_refuses_a_tampered_file(tmp_path, topic_head):
    save_hybrid({"topic": topic_head}, tmp_path)
    npz = tmp_path / "hybrid" / "topic.npz"
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weights"] = arrays["weights"] * 2  # a valid npz, different weights
    np.savez_compressed(npz, **arrays)
    with pytest.raises(HybridError, match="does not match its manifest"):
        load_hybrid(tmp_path)


def test_refuses_an_array_that_needs_pickle(tmp_path, topic_head):
    save_hybrid({"topic": topic_head}, tmp_path)
    npz = tmp_path / "hybrid" / "topic.npz"
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weights"] = np.array([{"not": "numbers"}], dtype=object)
    np.savez(npz, **arrays)
    manifest_path = tmp_path / "hybrid" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["tasks"]["topic"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()  # a forged manifest
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(HybridError, match="without pickle"):
        load_hybrid(tmp_path)


def test_model_without_hybrid_loads_empty(tmp_path):
    assert load_hybrid(tmp_path) == {}


def test_stance_features_see_target_overlap():
    feats = HashedTfidf("stance")
    fields = fields_for("stance", ["رفض الفصائل الاتفاق", "فاز الفريق"], ["الفصائل ترفض الاتفاق", "الفصائل ترفض الاتفاق"])
    feats.fit(fields)
    x = feats.transform(fields).toarray()
    assert x.shape[1] == feats.n_features
    assert x[0, -1] > x[1, -1]  # the overlap column: the first text repeats the target


def test_linear_part_handles_labels_missing_from_training():
    rows = [StanceExample(id=str(i), target="الاتفاق", text=t, label=lab)
            for i, (t, lab) in enumerate([("نرحب بالاتفاق", "favor"), ("نرفض الاتفاق", "against")] * 3)]
    part = fit_linear("stance", rows, ["favor", "against", "neutral", "unrelated"])
    p = part.proba(fields_for("stance", ["نرحب بالاتفاق"], ["الاتفاق"]))
    assert p.shape == (1, 4)
    assert p[0, 2] < 1e-6 and p[0, 3] < 1e-6 and p[0].argmax() == 0


def test_offsets_fitted_on_one_split_help_on_another():
    """A rare class the scores under-call: offsets fitted on split A lift macro-F1 on split B."""
    rng = np.random.default_rng(0)

    def split(n):
        y = (rng.random(n) < 0.1).astype(int)  # class 1 is rare
        logit = rng.normal(0, 0.5, n) + 2.0 * y - 2.5  # and its scores sit too low
        log_p = np.stack([np.zeros(n), logit], axis=1)
        return log_p, y

    a, ya = split(2000)
    b, yb = split(2000)
    offsets = fit_offsets(a, ya, ["s"] * len(ya))
    assert offsets[1] - offsets[0] > 0.3
    before = group_macro_f1(yb, b.argmax(1), ["s"] * len(yb))
    after = group_macro_f1(yb, (b + offsets).argmax(1), ["s"] * len(yb))
    assert after > before + 0.05


def test_predictor_blends_and_reports_parts(tiny_loaded, topic_head):
    from khabar.models.predictor import Predictor

    labels = tiny_loaded.schema.tasks["topic"]
    rows = [TopicExample(id=str(i), title="", text=t, label=labels[i % len(labels)])
            for i, t in enumerate(SPORT + ECONOMY)]
    linear = fit_linear("topic", rows, labels)
    k = len(labels)
    # A stacker that ignores the encoder: the blend must then follow the linear part exactly.
    head = HybridHead(linear, {"all": Stacker(np.hstack([np.zeros((k, k)), np.eye(k)]), np.zeros(k), np.zeros(k))}, {})
    p = Predictor(tiny_loaded.model, tiny_loaded.tokenizer, tiny_loaded.schema, hybrid={"topic": head},
                  keep_parts=True)
    out = p.label_one(SPORT[0], tasks=("topic",))["topic"]
    assert set(out["parts"]) == {"encoder", "linear", "blend"}
    lin = out["parts"]["linear"]
    assert out["label"] == max(lin, key=lin.get)
    for lab in labels:
        assert out["scores"][lab] == pytest.approx(lin[lab], rel=1e-4, abs=1e-5)
    plain = Predictor(tiny_loaded.model, tiny_loaded.tokenizer, tiny_loaded.schema).label_one(SPORT[0], tasks=("topic",))
    assert out["parts"]["encoder"] == pytest.approx(plain["topic"]["scores"], rel=1e-4)


def test_training_fits_hybrid_heads_and_the_store_serves_them(tiny_backbone, tmp_path):
    """A config that leaves rows outside the encoder's (topic limit, stance blend_holdout) gets
    hybrid heads at the end of training; loading the model brings them back, /info-style."""
    import os

    import yaml

    from khabar.models.hybrid import hybrid_info
    from khabar.models.predictor import Predictor
    from khabar.models.store import load_model
    from khabar.training.config import load_config
    from khabar.training.loop import train
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    os.environ["KHABAR_SAMPLE"] = str(root / "data" / "sample")
    raw = yaml.safe_load((root / "configs" / "tiny.yaml").read_text())
    raw.update(name="tiny-hybrid", epochs=1, blend_max_rows=50)  # 52 topic rows are outside the 80
    raw["tasks"]["topic"]["train"] = {"path": raw["tasks"]["topic"]["train"], "limit": 80}
    raw["tasks"]["stance"]["blend_holdout"] = 0.3
    del raw["tasks"]["ner"]
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    tag = train(load_config(path), log=lambda m: None)["tag"]
    loaded = load_model(tag)
    assert set(loaded.hybrid) == {"topic", "stance"}
    assert loaded.hybrid["topic"].info["linear_train_rows"] > 80  # all rows, not the encoder's 80
    assert loaded.training["hybrid"]["stance"]["blend_rows"] > 0
    assert loaded.training["hybrid"]["topic"]["blend_rows"] == 50  # the config's cap, not 2,000
    info = hybrid_info(loaded.hybrid)
    assert set(info["topic"]["families"]["all"]["weights"]) == {"encoder", "linear"}
    assert set(loaded.hybrid["stance"].stackers) <= {"short", "long"}
    res = Predictor.from_loaded(loaded, keep_parts=True).label_one(
        "فاز المنتخب بالمباراة النهائية", ["الفوز"], tasks=("topic", "stance"))
    assert set(res["topic"]["parts"]) == {"encoder", "linear", "blend"}
    assert res["topic"]["label"] == max(res["topic"]["scores"], key=res["topic"]["scores"].get)

    # `khabar hybrid` refits a stored model's heads: by default with its config's cap, else the flag's.
    from typer.testing import CliRunner

    from khabar.cli import app

    for flag, rows in (([], 50), (["--max-blend-rows", "51"], 51)):
        out = CliRunner().invoke(app, ["hybrid", "--model", tag, *flag])
        assert out.exit_code == 0, out.output
        refit = load_model(out.stdout.strip().splitlines()[-1])
        assert refit.training["hybrid"]["topic"]["blend_rows"] == rows
        assert refit.training["hybrid_of"] == loaded.tag


def test_offsets_on_blended_probabilities_equal_offsets_inside_the_stacker():
    rng = np.random.default_rng(3)
    st = Stacker(rng.normal(size=(3, 6)), rng.normal(size=3), np.array([0.4, -0.7, 0.1]))
    pe, pl = rng.dirichlet(np.ones(3), size=20), rng.dirichlet(np.ones(3), size=20)
    np.testing.assert_allclose(st.apply_offsets(st.proba(pe, pl, offsets=False)), st.proba(pe, pl), rtol=1e-9, atol=1e-12)


def test_stance_rows_route_by_text_length():
    assert family_of("stance", "ترفض الفصائل الاتفاق") == "short"
    assert family_of("stance", "ب" * LONG_TEXT_CHARS) == "long"
    assert family_of("topic", "ب" * LONG_TEXT_CHARS) == "all"


def test_each_family_goes_through_its_own_stacker():
    """Short rows follow the linear part, long rows keep the encoder: the head routes per row."""
    rows = [StanceExample(id=str(i), target="الاتفاق", text=t, label=lab)
            for i, (t, lab) in enumerate([("نرحب بالاتفاق", "favor"), ("نرفض الاتفاق", "against")] * 3)]
    linear = fit_linear("stance", rows, ["favor", "against"])
    follow_linear = Stacker(np.hstack([np.zeros((2, 2)), np.eye(2)]), np.zeros(2), np.zeros(2))
    head = HybridHead(linear, {"short": follow_linear, "long": encoder_only(2, np.array([0.0, 5.0]))}, {})
    p_enc = np.array([[0.9, 0.1], [0.9, 0.1]])
    p_lin = np.array([[0.2, 0.8], [0.2, 0.8]])
    texts = ["نص قصير", "ن" * LONG_TEXT_CHARS]
    plain, final = head.blend(p_enc, p_lin, texts)
    np.testing.assert_allclose(plain[0], p_lin[0], rtol=1e-4)
    np.testing.assert_allclose(plain[1], p_enc[1], rtol=1e-6)   # encoder alone, before offsets
    assert final[1].argmax() == 1                               # its offsets move the decision


def test_format_1_manifest_still_loads_for_every_family(tmp_path):
    rows = [StanceExample(id=str(i), target="الاتفاق", text=t, label=lab)
            for i, (t, lab) in enumerate([("نرحب بالاتفاق", "favor"), ("نرفض الاتفاق", "against")] * 3)]
    head = HybridHead(fit_linear("stance", rows, ["favor", "against"]), {"short": encoder_only(2)}, {})
    save_hybrid({"stance": head}, tmp_path)
    path = tmp_path / "hybrid" / "manifest.json"
    manifest = json.loads(path.read_text())
    spec = manifest["tasks"]["stance"]
    spec["stacker"] = spec.pop("stackers")["short"]   # the single stacker models saved before families
    manifest["format"] = 1
    path.write_text(json.dumps(manifest))
    assert set(load_hybrid(tmp_path)["stance"].stackers) == {"short", "long"}


def test_a_family_where_blending_hurts_keeps_the_encoder():
    """The encoder is right, the linear part is noise: the out-of-fold choice is the encoder."""
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 3, n)
    p_enc = np.full((n, 3), 0.1)
    p_enc[np.arange(n), y] = 0.8
    flip = rng.random(n) < 0.2   # the encoder errs on a fifth of rows
    p_enc[flip] = np.roll(p_enc[flip], 1, axis=1)
    p_lin = rng.dirichlet(np.ones(3), size=n)
    stacker, choice, figures = fit_family(p_enc, p_lin, y, ["s"] * n, ["a", "b", "c"])
    assert choice.startswith("encoder"), figures
    assert figures["encoder"] > figures["linear"] + 0.3
    np.testing.assert_allclose(stacker.proba(p_enc, p_lin, offsets=False), p_enc, rtol=1e-6)


def test_a_family_where_the_linear_part_knows_more_blends():
    rng = np.random.default_rng(2)
    n = 400
    y = rng.integers(0, 3, n)
    p_enc = rng.dirichlet(np.ones(3), size=n)   # the encoder knows nothing here
    p_lin = np.full((n, 3), 0.15)
    p_lin[np.arange(n), y] = 0.7
    _, choice, figures = fit_family(p_enc, p_lin, y, ["s"] * n, ["a", "b", "c"])
    assert choice.startswith("blend"), figures


def test_bootstrap_win_rate_tells_a_real_lead_from_a_tie():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 3, n)
    good = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
    poor = np.where(rng.random(n) < 0.6, y, (y + 1) % 3)
    groups = ["a"] * 150 + ["b"] * 150
    assert bootstrap_win_rate(y, good, poor, groups) > 0.99
    assert bootstrap_win_rate(y, poor, good, groups) < 0.01
    assert bootstrap_win_rate(y, good, good, groups) == 0.0   # a tie is never a win


def test_a_way_ahead_on_a_handful_of_rows_does_not_ship():
    """Beating the simpler way by more than MARGIN on a few rows is not enough: it must win in
    most bootstrap resamples too."""
    rng = np.random.default_rng(4)
    n = 300
    y = rng.integers(0, 3, n)
    encoder = np.where(rng.random(n) < 0.7, y, (y + 1) % 3)
    wrong, right = np.flatnonzero(encoder != y), np.flatnonzero(encoder == y)
    slight = encoder.copy()
    slight[wrong[:3]] = y[wrong[:3]]          # three rows fixed, one broken
    slight[right[0]] = (y[right[0]] + 1) % 3
    clear = encoder.copy()
    clear[wrong[:40]] = y[wrong[:40]]
    groups = ["s"] * n
    choice, figures = choose({"encoder": encoder, "blend": slight}, y, groups)
    assert figures["blend"] > figures["encoder"] + MARGIN   # ahead by the margin...
    assert choice == "encoder"                              # ...but not sure of it
    assert choose({"encoder": encoder, "blend": clear}, y, groups)[0] == "blend"


def _topic_config(train: list[dict], name: str, init_from: str | None = None, blend_holdout: float = 0.0):
    from khabar.training.config import from_dict

    return from_dict({"name": name, "backbone": "tiny", "init_from": init_from,
                      "tasks": {"topic": {"train": train, "blend_holdout": blend_holdout}}})


def test_blend_data_caps_rows_at_the_configs_blend_max_rows_unless_told():
    """The cap's default lives in the config (blend_max_rows), not in blend_data's signature."""
    from pathlib import Path

    from khabar.training.config import from_dict
    from khabar.training.hybrid import blend_data

    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "topic.jsonl"
    cfg = from_dict({"name": "capped", "backbone": "tiny", "blend_max_rows": 50,
                     "tasks": {"topic": {"train": [{"path": str(sample), "limit": 40}]}}})
    outside = len(blend_data(cfg, "topic", max_blend_rows=1000, ancestors=[], log=lambda m: None).blend)
    assert outside > 50  # 132 sample articles, 40 learnt by the encoder
    assert len(blend_data(cfg, "topic", ancestors=[], log=lambda m: None).blend) == 50
    assert len(blend_data(cfg, "topic", max_blend_rows=60, ancestors=[], log=lambda m: None).blend) == 60


def test_blend_rows_leave_out_what_the_starting_model_trained_on(tmp_path):
    """A warm-started run (the retrain case: the base's subsample merged with new rows under new
    ids) must not fit its stacker on articles the base's encoder learnt, and its linear part must
    still see the base's articles outside that subsample."""
    from pathlib import Path

    from khabar.training.hybrid import blend_data, encoder_keys
    from khabar.training.merge import text_key

    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "topic.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    base = _topic_config([{"path": str(sample), "limit": 40}], "base")
    learnt = encoder_keys(base, "topic")
    assert len(learnt) == 40
    # The candidate's file: the base's 40 articles re-numbered, plus 10 new ones (one with a label
    # the model does not know is only in the ancestor, so it must be dropped there).
    base_rows = [r for r in rows if text_key("topic", _as_example(r)) in learnt]
    new_rows = [r for r in rows if text_key("topic", _as_example(r)) not in learnt][:10]
    merged = tmp_path / "merged.jsonl"
    merged.write_text("".join(json.dumps({**r, "id": f"m{i}"}, ensure_ascii=False) + "\n"
                              for i, r in enumerate(base_rows + new_rows)), encoding="utf-8")
    child = _topic_config([{"path": str(merged)}], "child", init_from="khabar:base", blend_holdout=0.5)

    naive = blend_data(child, "topic", ancestors=[], log=lambda m: None)
    assert {text_key("topic", e) for e in naive.blend} & learnt  # the gap this guards against

    labels = sorted({r["label"] for r in rows} - {"culture"})
    data = blend_data(child, "topic", ancestors=[base], labels=labels, log=lambda m: None)
    assert data.blend and not {text_key("topic", e) for e in data.blend} & learnt
    keys = [text_key("topic", e) for e in data.all_rows]
    assert len(keys) == len(set(keys))  # the base's copies of merged rows are not counted twice
    outside_base = [r for r in rows if text_key("topic", _as_example(r)) not in learnt and r not in new_rows]
    expected = len(base_rows) + len(new_rows) + sum(r["label"] in labels for r in outside_base)
    assert len(data.all_rows) == expected
    assert all(e.label in labels for e in data.all_rows[len(base_rows) + len(new_rows):])


def _as_example(row: dict) -> TopicExample:
    return TopicExample(id=row["id"], title=row.get("title", ""), text=row["text"], label=row["label"])


def test_an_unreadable_lineage_is_an_error_not_a_guess(tmp_path):
    """A start model the store no longer has: which rows it learnt is unknown, so the hybrid fit
    for that run is refused (fit_hybrid then ships the encoder alone) rather than guessed."""
    from khabar.training.hybrid import LineageError, lineage

    child = _topic_config([{"path": str(tmp_path / "x.jsonl")}], "child", init_from="khabar:gone")
    with pytest.raises(LineageError, match="khabar:gone"):
        lineage(child)
    assert lineage(_topic_config([{"path": str(tmp_path / "x.jsonl")}], "fresh")) == []


def test_a_source_with_a_handful_of_rows_does_not_swing_the_mean():
    """One Baly claim among 800 short pairs used to be a third of the family's figure."""
    from khabar.training.hybrid import MIN_GROUP_ROWS

    y = np.array([0, 1] * 50 + [2])
    groups = ["big"] * 100 + ["tiny"]
    right = y.copy()
    wrong_on_tiny = y.copy()
    wrong_on_tiny[-1] = 0
    assert group_macro_f1(y, right, groups) == group_macro_f1(y, wrong_on_tiny, groups) == 1.0
    assert MIN_GROUP_ROWS > 1
    # Only small groups: all of them count.
    assert group_macro_f1(y[-3:], wrong_on_tiny[-3:], ["a", "a", "b"]) == 0.5
