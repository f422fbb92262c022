"""The multitask model: NER's own top layers start as the shared encoder, take NER's gradient away
from the shared top, survive the store, the ONNX export, the int8 engine and a warm start."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from khabar.models.backbones import load_encoder
from khabar.models.multitask import KhabarModel
from khabar.models.schema import ModelSchema

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"topic": ["a", "b", "c"], "ner": ["O", "B-PERS", "I-PERS", "B-LOC", "I-LOC"]}


def _model(backbone: Path, own: int) -> KhabarModel:
    torch.manual_seed(0)
    schema = ModelSchema(tasks=LABELS, max_length=32, stride=8, ner_own_layers=own)
    return KhabarModel(load_encoder(str(backbone)), schema).eval()


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[2, 40, 41, 42, 43, 3], [2, 50, 51, 3, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}


def test_ner_branch_starts_as_the_shared_encoder(tiny_backbone):
    shared, own = _model(tiny_backbone, 0), _model(tiny_backbone, 1)
    own.heads.load_state_dict(shared.heads.state_dict())
    with torch.no_grad():
        want = shared(**_batch(), tasks=("topic", "ner"))
        got = own(**_batch(), tasks=("topic", "ner"))
    for task in want:
        torch.testing.assert_close(got[task], want[task], atol=1e-5, rtol=1e-5)


def test_ner_loss_trains_its_own_layers_and_not_the_shared_top(tiny_backbone):
    model = _model(tiny_backbone, 1).train()
    model(**_batch(), tasks=("ner",))["ner"].sum().backward()
    top = model.encoder.encoder.layer[-1]
    below = model.encoder.encoder.layer[0]
    assert all(p.grad is None or not p.grad.any() for p in top.parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.ner_layers.parameters() if p.dim() == 2)
    assert below.attention.self.query.weight.grad.any()


def test_a_topic_only_call_skips_the_ner_branch(tiny_backbone):
    model = _model(tiny_backbone, 1)
    seen = []
    model.ner_layers[0].register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        model(**_batch(), tasks=("topic",))
    assert seen == []


@pytest.mark.parametrize("own", [-1, 3])
def test_impossible_own_layer_counts_are_refused(tiny_backbone, own):
    with pytest.raises(ValueError, match="ner_own_layers"):
        _model(tiny_backbone, own)  # the tiny backbone has 2 layers


@pytest.fixture(scope="module")
def own_layers_tag(tiny_backbone) -> str:
    """The tiny three-task model trained with NER's own top layer."""
    from khabar.training.config import load_config
    from khabar.training.loop import train

    os.environ["KHABAR_SAMPLE"] = str(ROOT / "data" / "sample")
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["epochs=1", "ner_own_layers=1"])
    return train(cfg, log=lambda m: None)["tag"]


def test_own_layers_are_stored_and_exported(own_layers_tag, tmp_path):
    from khabar.models.engines import OnnxEngine, TorchInt8Engine
    from khabar.models.onnx_export import export_onnx
    from khabar.models.predictor import TorchEngine
    from khabar.models.store import load_model
    from khabar.models.windows import collate, make_windows

    loaded = load_model(own_layers_tag)
    assert loaded.schema.ner_own_layers == 1 and len(loaded.model.ner_layers) == 1
    # Training moved the branch away from the shared top layer it was copied from.
    own = loaded.model.ner_layers[0].attention.self.query.weight
    assert not torch.equal(own, loaded.model.encoder.encoder.layer[-1].attention.self.query.weight)

    rows = [json.loads(line) for line in (ROOT / "data" / "sample" / "topic.jsonl").read_text(
        encoding="utf-8").splitlines()[:4]]
    windows = make_windows(loaded.tokenizer, [r["text"] for r in rows], max_length=loaded.schema.max_length,
                           stride=loaded.schema.stride)
    batch = collate(windows[:6], loaded.tokenizer.pad_token_id)
    ref = TorchEngine(loaded.model)(batch, ("topic", "ner"))
    manifest = export_onnx(loaded.model, tmp_path / "graph", tokenizer=loaded.tokenizer, keep_fp32=True)
    assert manifest["smoothed_linears"] == 3 * (2 + 1)  # three per layer: two shared, one NER's own
    got = OnnxEngine(tmp_path / "graph" / "model.onnx", list(loaded.schema.tasks), threads=1)(batch, ("topic", "ner"))
    for task in ref:
        np.testing.assert_allclose(got[task], ref[task], atol=1e-4)
    quantized = TorchInt8Engine(loaded.model)
    assert type(quantized.model.ner_layers[0].attention.self.query) is not torch.nn.Linear


def test_a_warm_start_takes_the_stored_own_layers(own_layers_tag, tiny_backbone):
    from khabar.models.store import load_model
    from khabar.training.warmstart import init_from_stored

    stored = load_model(own_layers_tag)
    fresh = KhabarModel(load_encoder(str(tiny_backbone)), stored.schema)
    init_from_stored(fresh, own_layers_tag)
    for (name, want), got in zip(stored.model.ner_layers.state_dict().items(),
                                 fresh.ner_layers.state_dict().values()):
        assert torch.equal(got, want), name
