"""Class weights for the sentence-level losses (topic, stance).

Macro-F1 counts a rare label (ans `neutral`: 2% of its rows; Baly's `against`: 4%) as much as a
frequent one, and plain cross-entropy on such sets learns to never say the rare label. Weighting
each label by count ** -0.5 (sqrt-inverse frequency) is a middle way between no weighting and
fully balanced weights, which over-predict the rare labels on small sets.
"""
from __future__ import annotations

from collections import Counter

import torch

SCHEMES = ("none", "sqrt_inverse")
WEIGHTED_TASKS = ("topic", "stance")  # NER stays unweighted: per-token O dominance is the task itself


def class_weights(labels: list[int], n_labels: int, scheme: str) -> torch.Tensor | None:
    """Per-label loss weights with mean 1 over the labels seen in training, or None for `none`.

    A label with no training rows gets weight 0 (nothing to learn from it, and a huge weight on it
    would only matter if a row appeared).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"class_weighting must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if scheme == "none":
        return None
    counts = Counter(labels)
    raw = torch.tensor([counts[i] ** -0.5 if counts[i] else 0.0 for i in range(n_labels)])
    seen = raw > 0
    if not seen.any():
        return None
    return raw / raw[seen].mean()
