"""Checkpoint averaging: the mean is exact, integer buffers pass through, mismatched files are
refused, and a run with ``average_last_epochs`` measures the mean and records it."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from khabar.training.averaging import average_weights, epoch_weights_path, kept_epochs, save_epoch_weights
from khabar.training.config import from_dict
from tests.test_training import toy_config, toy_files


def test_mean_of_float_tensors_and_last_integer_buffer(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}, str(a))
    save_file({"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])}, str(b))
    mean = average_weights([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["w"].dtype == torch.float32
    assert torch.equal(mean["ids"], torch.tensor([0, 1])) and mean["ids"].dtype == torch.int64


def test_files_with_other_tensors_are_refused(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.ones(2)}, str(a))
    save_file({"v": torch.ones(2)}, str(b))
    with pytest.raises(ValueError, match="other tensors"):
        average_weights([a, b])
    with pytest.raises(ValueError, match="no weight files"):
        average_weights([])


def test_only_the_last_epochs_are_kept(tmp_path):
    model = torch.nn.Linear(2, 2)
    for epoch in (1, 2, 3, 4):
        save_epoch_weights(tmp_path, model, epoch, keep=2)
    assert kept_epochs(tmp_path) == [3, 4]
    assert epoch_weights_path(tmp_path, 4).exists()


def test_a_run_scores_the_mean_of_its_last_epochs(tiny_backbone, tmp_path):
    from khabar.models.store import load_model
    from khabar.training.loop import run_dir_for, train

    cfg = from_dict(toy_config(tiny_backbone, toy_files(tmp_path), epochs=3, average_last_epochs=2))
    logs: list[str] = []
    result = train(cfg, log=logs.append)
    averaged = json.loads((run_dir_for(cfg) / "averaged.json").read_text())
    assert averaged["epochs"] == [2, 3]
    assert any(m.startswith("mean of epochs 2-3: dev score") for m in logs), logs
    training = load_model(result["tag"]).training
    assert training["averaged"]["epochs"] == [2, 3]
    # What the store reports is what the kept weights scored.
    expected = averaged["dev"] if averaged["kept"] else training["history"][training["best_epoch"] - 1]["dev"]
    assert training["dev_metrics"] == expected
