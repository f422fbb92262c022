"""benchmarks/pipeline_export.py (the bench baseline's folders): plain transformers folders whose
pipelines give khabar's labels and scores."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from benchmarks.pipeline_export import ExportError, export_task, mean_pool_layer
from khabar.models.normalize import normalize
from khabar.models.predictor import Predictor

# Short texts: one window each, so the pipeline (first window only) and khabar see the same tokens.
TEXTS = [
    "فاز الفريق الوطني في المباراة",
    "ارتفعت أسعار النفط اليوم",
    "زار الرئيس المصري باريس",
    "أطلقت شركة سامسونج هاتفا في دبي",
]
TARGET = "دعم الاقتصاد"


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return {task: export_task(tiny_loaded, task, out / task) for task in ("topic", "stance", "entities")}


@pytest.fixture(scope="module")
def predictor(tiny_loaded):
    return Predictor.from_loaded(tiny_loaded)


def _pipeline(kind, path, **kw):
    from transformers import pipeline

    return pipeline(kind, model=str(path), device="cpu", **kw)


def test_folders_are_plain_transformers(exported):
    for task, path in exported.items():
        config = json.loads((path / "config.json").read_text())
        assert "auto_map" not in config  # no remote code
        assert config["architectures"] == (["BertForTokenClassification"] if task == "entities"
                                           else ["BertForSequenceClassification"])
        assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
        assert json.loads((path / "khabar_export.json").read_text())["task"] == task


def test_topic_and_stance_pipelines_give_khabars_scores(exported, predictor, tiny_loaded):
    tok = tiny_loaded.tokenizer
    assert all(len(tok(normalize(TARGET).text, normalize(t).text)["input_ids"]) <= tiny_loaded.schema.max_length
               for t in TEXTS)
    topic = _pipeline("text-classification", exported["topic"])
    stance = _pipeline("text-classification", exported["stance"])
    target = normalize(TARGET).text
    for text in TEXTS:
        ours = predictor.label_one(text, [TARGET])
        norm = normalize(text).text
        got_t = {d["label"]: d["score"] for d in topic(norm, truncation=True, top_k=None)}
        got_s = {d["label"]: d["score"] for d in stance({"text": target, "text_pair": norm},
                                                         truncation="only_second", top_k=None)}
        assert got_t == pytest.approx(ours["topic"]["scores"], abs=1e-4)
        assert got_s == pytest.approx(ours["stance"][0]["scores"], abs=1e-4)
        assert max(got_t, key=got_t.get) == ours["topic"]["label"]


def test_entity_pipeline_gives_khabars_entities(exported, predictor, tiny_loaded):
    ner = _pipeline("token-classification", exported["entities"], aggregation_strategy="first",
                    stride=tiny_loaded.schema.stride)
    model = ner.model
    with torch.no_grad():  # the head is exactly khabar's: same logits on the same tokens
        enc = tiny_loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
        ours = tiny_loaded.model(**enc, tasks=("ner",))["ner"]
        theirs = model(**enc).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in TEXTS:
            norm = normalize(text)
            got = sorted((*norm.span_to_original(int(e["start"]), int(e["end"])), e["entity_group"])
                         for e in ner(norm.text))
            want = sorted((e["start"], e["end"], e["label"]) for e in predictor.label_one(text, tasks=["entities"])["entities"])
            assert got == want


def test_mean_pool_layer_survives_large_residuals():
    """The pooled logits stay within 1e-3 even when the first token's own state is large."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    hidden, k = 32, 4
    config = BertConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                        vocab_size=10, num_labels=k)
    model = BertForSequenceClassification(config).eval()
    head = torch.nn.Linear(hidden, k)
    layer, pooler, classifier = mean_pool_layer(head.weight.detach(), head.bias.detach(), hidden, 64)
    model.bert.encoder.layer[0].load_state_dict(layer)
    model.bert.pooler.load_state_dict(pooler)
    model.classifier.load_state_dict(classifier)
    with torch.no_grad():  # loud token states (|h| up to ~30): the residual the layer must drown out
        model.bert.embeddings.LayerNorm.weight.copy_(torch.randn(hidden) * 5)
    captured = {}
    model.bert.embeddings.register_forward_hook(lambda mod, args, out: captured.update(states=out))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        logits = model(inputs_embeds=torch.randn(2, 7, hidden), attention_mask=mask).logits
        states = captured["states"]
        mean = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(logits, head(mean), atol=1e-3, rtol=1e-4)


def test_export_errors_name_the_problem(tiny_loaded, tmp_path):
    with pytest.raises(ExportError, match="unknown task"):
        export_task(tiny_loaded, "sentiment", tmp_path)
    with pytest.raises(ExportError, match="hidden size"):
        mean_pool_layer(torch.zeros(40, 64), torch.zeros(40), 64, 128)


def test_cli_exports_a_folder(tiny_model_tag, tmp_path):
    from benchmarks.pipeline_export import app

    runner = CliRunner()
    res = runner.invoke(app, ["--model", tiny_model_tag, "--task", "entities", "--out", str(tmp_path / "ner")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ner" / "config.json").exists()
    bad = runner.invoke(app, ["--model", tiny_model_tag, "--task", "sentiment", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    missing = runner.invoke(app, ["--model", "khabar:nosuchversion", "--task", "topic", "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1 and "no model" in missing.output
