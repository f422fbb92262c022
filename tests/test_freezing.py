"""Freezing the encoder's bottom: what stays pretrained, and that the backward pass stops above it."""
from __future__ import annotations

import pytest
import torch


def _encoder(tiny_backbone):
    from khabar.models.backbones import load_encoder

    return load_encoder(str(tiny_backbone))


def _batch():
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_bottom_layers_and_the_embedding_module_get_no_gradient_and_no_backward(tiny_backbone):
    from khabar.training.freezing import freeze_encoder

    encoder = _encoder(tiny_backbone)
    line = freeze_encoder(encoder, embeddings=True, layers=1)
    assert line.startswith("frozen: the embeddings and layers 1-1")
    outputs_need_grad = []
    hook = encoder.encoder.layer[0].register_forward_hook(
        lambda module, args, out: outputs_need_grad.append((out[0] if isinstance(out, tuple) else out).requires_grad))
    encoder(**_batch()).last_hidden_state.sum().backward()
    hook.remove()
    # The frozen layer's output needs no gradient, so autograd never runs back through it.
    assert outputs_need_grad == [False]
    for name, p in encoder.named_parameters():
        if name.startswith(("embeddings.", "encoder.layer.0.")):
            assert not p.requires_grad and p.grad is None, name
        elif name.startswith("encoder.layer.1."):
            assert p.requires_grad and p.grad is not None, name


def test_embeddings_alone_freeze_only_the_word_table(tiny_backbone):
    from khabar.training.freezing import freeze_encoder

    encoder = _encoder(tiny_backbone)
    assert freeze_encoder(encoder, embeddings=True).startswith("frozen: the word-embedding table")
    assert not encoder.get_input_embeddings().weight.requires_grad
    assert encoder.embeddings.LayerNorm.weight.requires_grad
    assert freeze_encoder(_encoder(tiny_backbone)) is None


def test_freezing_every_layer_is_refused_with_the_count(tiny_backbone):
    from khabar.training.freezing import freeze_encoder

    with pytest.raises(ValueError, match="freeze_layers is 2 but the encoder has 2 layers; at most 1"):
        freeze_encoder(_encoder(tiny_backbone), layers=2)


def test_a_run_with_a_frozen_layer_stores_it_unchanged_and_still_learns(tiny_backbone, tmp_path):
    from safetensors.torch import load_file

    from khabar.models.store import model_path
    from khabar.training.config import ConfigError, from_dict
    from khabar.training.loop import train
    from tests.test_training import toy_config, toy_files

    files = toy_files(tmp_path)
    lines: list[str] = []
    result = train(from_dict(toy_config(tiny_backbone, files, name="bottom", freeze_layers=1)), log=lines.append)
    assert any(line.startswith("frozen: the embeddings and layers 1-1") for line in lines), lines
    assert result["dev_metrics"]["topic"]["topic"]["accuracy"] >= 0.95
    pretrained = _encoder(tiny_backbone).state_dict()
    _, path = model_path(result["tag"])
    after = load_file(str(path / "model.safetensors"))

    def stored(key: str) -> torch.Tensor:
        return next(v for k, v in after.items() if k.endswith("encoder." + key))

    for key in ("embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight"):
        assert stored(key).equal(pretrained[key]), f"{key} is frozen but changed"
    assert not stored("encoder.layer.1.attention.self.query.weight").equal(
        pretrained["encoder.layer.1.attention.self.query.weight"])
    with pytest.raises(ConfigError, match="freeze_layers is 5"):
        train(from_dict(toy_config(tiny_backbone, files, name="toomany", freeze_layers=5)), log=lambda m: None)


def test_freeze_layers_at_zero_keeps_old_run_folders():
    from khabar.training.config import from_dict

    base = {"name": "x", "backbone": "b", "tasks": {"topic": {"train": "a"}}}
    assert from_dict({**base, "freeze_layers": 0}).fingerprint() == from_dict(base).fingerprint()
    assert from_dict({**base, "freeze_layers": 2}).fingerprint() != from_dict(base).fingerprint()
