"""`khabar eval` end to end with the real tiny model: files written, JSON shape, self-contained
HTML, baseline, comparison, unknown labels and bad input."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from khabar.cli import app

# Hand-written examples (the project's own text). "weather" and "maybe" are labels the model was
# never trained on; DATE is an entity type it does not know.
TOPIC = [
    ("sport", "فاز المنتخب الوطني لكرة القدم على منافسه بثلاثة أهداف في المباراة النهائية"),
    ("economy", "ارتفعت أسعار النفط في الأسواق العالمية بعد قرار خفض الإنتاج"),
    ("culture", "افتتح معرض الكتاب الدولي أبوابه أمام الزوار بمشاركة مئات دور النشر"),
    ("technology", "أطلقت شركة ناشئة تطبيقا جديدا يعتمد على الذكاء الاصطناعي لترجمة النصوص"),
    ("middleEast", "بحث وزيرا خارجية البلدين في عمان سبل التهدئة في المنطقة"),
    ("weather", "تتوقع الأرصاد أمطارا غزيرة على المناطق الساحلية خلال الأسبوع المقبل"),
]
STANCE = [
    ("agree", "خفض الضرائب على الشركات الصغيرة", "رحب التجار بقرار خفض الضرائب وقالوا إنه سينعش السوق"),
    ("disagree", "خفض الضرائب على الشركات الصغيرة", "انتقد خبراء قرار خفض الضرائب معتبرين أنه يضر بالموازنة"),
    ("unrelated", "خفض الضرائب على الشركات الصغيرة", "فاز الفريق المحلي بكأس البطولة بعد مباراة مثيرة"),
    ("maybe", "خفض الضرائب على الشركات الصغيرة", "لم يتضح بعد موقف الحكومة من المقترح"),
]
NER = """التقى O
الرئيس O
سمير B-PERS
العلي I-PERS
في O
القاهرة B-LOC
وفدا O
من O
الأمم B-ORG
المتحدة I-ORG
يوم O
الأحد B-DATE

أعلنت O
شركة O
النور B-ORG
عن O
افتتاح O
فرع O
في O
دبي B-LOC
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("eval_files")
    (d / "news.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "title": "", "text": t, "label": lab},
                                                      ensure_ascii=False) + "\n" for i, (lab, t) in enumerate(TOPIC)),
                                  encoding="utf-8")
    (d / "claims.jsonl").write_text("".join(json.dumps({"id": f"s{i}", "target": tg, "text": t, "label": lab},
                                                        ensure_ascii=False) + "\n" for i, (lab, tg, t) in enumerate(STANCE)),
                                    encoding="utf-8")
    (d / "sentences.conll").write_text(NER, encoding="utf-8")
    (d / "empty.jsonl").write_text("", encoding="utf-8")
    return {"topic": d / "news.jsonl", "stance": d / "claims.jsonl", "ner": d / "sentences.conll",
            "empty": d / "empty.jsonl", "dir": d}


@pytest.fixture(scope="module")
def topic_only_tag(tiny_loaded) -> str:
    """The tiny model's encoder and topic head saved as a topic-only model."""
    from khabar.models.multitask import KhabarModel
    from khabar.models.schema import ModelSchema
    from khabar.models.store import save_model

    s = tiny_loaded.schema
    schema = ModelSchema(tasks={"topic": s.tasks["topic"]}, max_length=s.max_length, stride=s.stride,
                         backbone=s.backbone)
    model = KhabarModel(copy.deepcopy(tiny_loaded.model.encoder), schema)
    model.load_state_dict(tiny_loaded.model.state_dict(), strict=False)
    return save_model(model, tiny_loaded.tokenizer, training=tiny_loaded.training)


@pytest.fixture(scope="module")
def report(tiny_model_tag, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval_out") / "report"
    result = CliRunner().invoke(app, [
        "eval", "--model", tiny_model_tag, "--topic", str(files["topic"]), "--stance", str(files["stance"]),
        "--ner", str(files["ner"]), "--out", str(out), "--baseline", "--compare", tiny_model_tag,
        "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    return out


def _check_cls(m: dict, n: int) -> None:
    assert m["n"] == n and 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
    for lab, v in m["per_label"].items():
        assert set(v) == {"precision", "recall", "f1", "support"} and 0 <= v["f1"] <= 1


def test_metrics_json_shape(report, tiny_model_tag):
    m = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert m["model"] == {"tag": tiny_model_tag}
    _check_cls(m["topic"], 5)  # the "weather" article is left out
    assert set(m["stance"]) == {"claims"}
    _check_cls(m["stance"]["claims"], 3)
    ner = m["ner"]["sentences"]
    assert ner["n_sentences"] == 2 and 0 <= ner["micro_f1"] <= 1
    assert set(ner["per_type"]) <= {"PERS", "LOC", "ORG", "MISC"}
    for v in ner["per_type"].values():
        assert set(v) == {"precision", "recall", "f1", "support"}
    assert m["throughput"]["articles_per_s"] > 0
    assert m["unknown_labels"] == {"topic/news": {"n": 1, "labels": {"weather": 1}},
                                   "stance/claims": {"n": 1, "labels": {"maybe": 1}},
                                   "ner/sentences": {"n": 1, "labels": {"DATE": 1}}}
    assert m["topic"]["unknown_labels"]["labels"] == {"weather": 1}
    # The baseline has the same shape; the comparison with the same model shows no difference.
    _check_cls(m["baseline"]["topic"], 5)
    _check_cls(m["baseline"]["stance"]["claims"], 3)
    assert m["baseline"]["ner"]["sentences"]["n_sentences"] == 2
    assert m["baseline"]["info"]["ner"]["chosen"] in {"crf", "gazetteer"}
    assert m["compare"]["model"] == {"tag": tiny_model_tag}
    for entry in m["compare"]["deltas"]["sets"].values():
        assert entry["delta"] == 0 and entry["p_bootstrap"] == 1.0
    assert set(m["vs_baseline"]["tasks"]) == {"topic", "stance", "ner"}
    assert m["topic"]["macro_f1"] == pytest.approx(m["compare"]["topic"]["macro_f1"])


def test_html_is_one_self_contained_file(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 6  # per-label bars, confusion x2, entity F1, reliability...
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<[^>]*\s(href|src)=\"(?!data:image/png;base64,)", page)  # nothing outside
    assert "<script" not in page and "<link" not in page
    assert "<mark" in page and "Headline" in page and "ECE" in page
    assert "weather" in page  # unknown labels are reported in the page
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "Δ model − baseline" in md and "Δ model − compared" in md
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (report / link).is_file()


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_bad_input_stops_before_work(tiny_model_tag, topic_only_tag, files, tmp_path):
    run = lambda *args: CliRunner().invoke(app, ["eval", "--out", str(tmp_path / "out"), *args])  # noqa: E731
    assert "does not exist" in _one_line_error(run("--model", tiny_model_tag, "--topic", str(files["dir"] / "nope.jsonl")))
    assert "is empty" in _one_line_error(run("--model", tiny_model_tag, "--stance", str(files["empty"])))
    assert "no model" in _one_line_error(run("--model", "khabar:doesnotexist", "--topic", str(files["topic"])))
    assert "has no stance task" in _one_line_error(run("--model", topic_only_tag, "--stance", str(files["stance"])))
    assert "has no ner task" in _one_line_error(run("--model", tiny_model_tag, "--ner", str(files["ner"]),
                                                     "--compare", topic_only_tag))
    assert "nothing to evaluate" in _one_line_error(run("--model", tiny_model_tag))
    for flag in ("--topic-windows", "--stance-windows"):
        assert f"{flag} must be a positive number" in _one_line_error(
            run("--model", tiny_model_tag, "--topic", str(files["topic"]), flag, "0"))
    assert not (tmp_path / "out").exists()


def test_baseline_skipped_when_training_data_changed(tiny_loaded, files, tmp_path):
    from khabar.eval.pipeline import prepare, run_evaluation
    from khabar.eval.report import write_report
    from khabar.models.store import save_model

    training = copy.deepcopy(tiny_loaded.training)
    training["data"]["topic"]["train"][0]["sha256"] = "0" * 64
    training["data"]["ner"]["train"][0]["path"] = str(tmp_path / "gone.conll")
    tag = save_model(tiny_loaded.model, tiny_loaded.tokenizer, training=training)
    sets, settings = prepare(tag, topic=files["topic"], ner=[files["ner"]], limit=3)
    assert len(sets[0].examples) <= 3 and len(sets[1].examples) == 2  # --limit is per file
    ev = run_evaluation(tag, sets, settings, baseline=True, n_boot=50, progress=False, log=lambda m: None)
    assert not ev.baseline.results
    assert any("topic" in w and "has changed since training" in w for w in ev.warnings)
    assert any("ner" in w and "gone.conll is missing" in w for w in ev.warnings)
    write_report(ev, tmp_path / "r")
    m = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert "topic" not in m["baseline"] and len(m["baseline"]["warnings"]) == 2
    assert "has changed since training" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")


def test_compare_models_for_the_gate(tiny_model_tag, topic_only_tag, files):
    from khabar.eval.compare import compare_models
    from khabar.eval.datasets import EvalInputError

    # Same encoder and topic head: the gate sees no change.
    result = compare_models(tiny_model_tag, topic_only_tag, topic=files["topic"], n_boot=100)
    assert set(result["tasks"]) == {"topic"}
    assert result["tasks"]["topic"]["delta"] == pytest.approx(0.0)
    assert result["tasks"]["topic"]["p_bootstrap"] == 1.0
    assert result["sets"]["topic/news"]["p_mcnemar"] == 1.0
    assert set(result["metrics"]) == {tiny_model_tag, topic_only_tag}
    with pytest.raises(EvalInputError, match="no stance task"):
        compare_models(tiny_model_tag, topic_only_tag, stance=[files["stance"]])
