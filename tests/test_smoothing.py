"""Smoothing before int8: the same function, with the activation outliers moved into the weights."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from khabar.models.smoothing import (SmoothedLinear, input_maxima, smooth_encoder, smoothed_targets,
                                     text_calibration)

ROOT = Path(__file__).resolve().parents[1]


def test_smoothed_linear_is_the_same_function():
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 5)
    scale = torch.rand(8) * 10 + 0.1
    x = torch.randn(3, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(SmoothedLinear(linear, scale)(x), linear(x), atol=1e-5, rtol=1e-5)


def test_calibration_reads_the_sample_articles(tiny_loaded):
    import khabar.models.smoothing as smoothing

    texts, source = smoothing.calibration_texts()
    assert source == "data/sample/topic.jsonl (64 articles)" and len(texts) == 64
    first = json.loads((ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert texts[0] == first["text"]
    batches = text_calibration(tiny_loaded.tokenizer, max_length=32, stride=tiny_loaded.schema.stride,
                               batch_size=10)
    assert len(batches) == 10  # the first 96 windows
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask", "token_type_ids"}
        assert b["input_ids"].shape[1] <= 32 and b["attention_mask"].sum() > 0


def test_smoothing_keeps_the_encoder_output_and_evens_out_the_inputs(tiny_loaded):
    encoder = copy.deepcopy(tiny_loaded.model.encoder).eval()
    layers = encoder.config.num_hidden_layers
    # An outlier channel like the offline encoder's: channel 0 of every FFN input 40x larger.
    with torch.no_grad():
        for name, mod in encoder.named_modules():
            if name.endswith("attention.output.LayerNorm"):
                mod.weight[0] *= 40.0
    batches = text_calibration(tiny_loaded.tokenizer, max_length=32, stride=tiny_loaded.schema.stride)
    with torch.inference_mode():
        before = [encoder(**b).last_hidden_state for b in batches]
    ffn_up = [n for n in smoothed_targets(encoder) if n.endswith("intermediate.dense")]
    raw = input_maxima(encoder, batches)

    assert smooth_encoder(encoder, batches) == 3 * layers
    assert all(isinstance(encoder.get_submodule(n), SmoothedLinear) for n in ffn_up)
    with torch.inference_mode():
        after = [encoder(**b).last_hidden_state for b in batches]
    for a, b in zip(before, after):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    # what int8 sees: the smoothed input's largest channel against its median channel
    for name in ffn_up:
        peak = raw[name]
        smoothed = peak * encoder.get_submodule(name).inverse_scale
        assert (smoothed.max() / smoothed.median()) < 0.5 * (peak.max() / peak.median())


def test_alpha_outside_0_1_is_refused(tiny_loaded):
    encoder = copy.deepcopy(tiny_loaded.model.encoder)
    with pytest.raises(ValueError, match="alpha"):
        smooth_encoder(encoder, [], alpha=1.5)


def test_the_exported_int8_graph_is_smoothed(tiny_loaded):
    from khabar.models.engines import make_engine

    engine = make_engine("onnx-int8", tiny_loaded, threads=1)
    manifest = json.loads((engine.path.parent / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["smoothed_linears"] == 3 * tiny_loaded.model.encoder.config.num_hidden_layers
    assert manifest["calibration"].startswith("data/sample/topic.jsonl")
    # the caller's model is left as it was
    assert not any(isinstance(m, SmoothedLinear) for m in tiny_loaded.model.modules())
    assert engine.path.name == "model.int8.onnx"
