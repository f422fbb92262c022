"""Class weights for the sentence-level losses."""
from __future__ import annotations

import pytest
import torch

from khabar.training.config import ConfigError, from_dict
from khabar.training.weighting import class_weights


def test_sqrt_inverse_weights_rare_labels_up_with_mean_one():
    labels = [0] * 100 + [1] * 25 + [2] * 4
    w = class_weights(labels, 4, "sqrt_inverse")
    assert w[3] == 0.0, "a label with no rows gets no weight"
    assert torch.isclose(w[:3].mean(), torch.tensor(1.0))
    assert torch.isclose(w[1] / w[0], torch.tensor(2.0)) and torch.isclose(w[2] / w[0], torch.tensor(5.0))


def test_none_means_plain_cross_entropy_and_unknown_schemes_fail():
    assert class_weights([0, 1, 1], 2, "none") is None
    with pytest.raises(ValueError, match="class_weighting"):
        class_weights([0, 1], 2, "balanced-ish")
    with pytest.raises(ConfigError, match="class_weighting must be one of"):
        from_dict({"name": "x", "backbone": "b", "tasks": {"topic": {"train": "a"}},
                   "class_weighting": "inverse"})


def test_new_fields_at_defaults_keep_old_run_folders():
    base = {"name": "x", "backbone": "b", "tasks": {"topic": {"train": "a"}}}
    plain = from_dict(base).fingerprint()
    assert from_dict({**base, "freeze_embeddings": False, "class_weighting": "none"}).fingerprint() == plain
    assert from_dict({**base, "freeze_embeddings": True}).fingerprint() != plain


def test_per_source_weights_lift_a_label_rare_in_its_own_file():
    """Baly's few `against` rows sit next to thousands of ANS `against` rows: pooled counts call
    the label common, per-source counts see it rare in Baly. Each file's rows still average 1."""
    from khabar.training.weighting import row_weights

    labels = [0] * 90 + [1] * 10 + [1] * 90 + [0] * 10  # file a: label 1 rare; file b: label 0 rare
    sources = ["a"] * 100 + ["b"] * 100
    w = row_weights(labels, sources)
    assert w[95] > 2 * w[0] and w[195] > 2 * w[100]
    assert abs(float(w[:100].mean()) - 1) < 1e-5 and abs(float(w[100:].mean()) - 1) < 1e-5
    assert class_weights(labels, 2, "sqrt_inverse_per_source") is None  # rows are weighted, not labels
    with pytest.raises(ValueError, match="labels but"):
        row_weights([0, 1], ["a"])
