"""Class weights for the sentence-level losses (topic, stance).

Macro-F1 counts a rare label (ans `neutral`: 2% of its rows; Baly's `against`: 4%) as much as a
frequent one, and plain cross-entropy on such sets learns to never say the rare label. Weighting
each label by count ** -0.5 (sqrt-inverse frequency) is a middle way between no weighting and
fully balanced weights, which over-predict the rare labels on small sets.

Counted over the pooled rows of a task, a label rare in one file is not rare at all: Baly's 37
`disagree` rows are "against", next to ANS's 1,686 and Mawqif's ~800. ``sqrt_inverse_per_source``
counts (file, label) instead and weights each row, keeping every file's mean row weight at 1 so
the files keep their share of the loss.
"""
from __future__ import annotations

from collections import Counter

import torch

SCHEMES = ("none", "sqrt_inverse", "sqrt_inverse_per_source")
PER_ROW = ("sqrt_inverse_per_source",)
WEIGHTED_TASKS = ("topic", "stance")  # NER stays unweighted: per-token O dominance is the task itself


def class_weights(labels: list[int], n_labels: int, scheme: str) -> torch.Tensor | None:
    """Per-label loss weights with mean 1 over the labels seen in training, or None for `none`.

    A label with no training rows gets weight 0 (nothing to learn from it, and a huge weight on it
    would only matter if a row appeared).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"class_weighting must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if scheme == "none" or scheme in PER_ROW:  # per-row schemes weight rows, not labels
        return None
    counts = Counter(labels)
    raw = torch.tensor([counts[i] ** -0.5 if counts[i] else 0.0 for i in range(n_labels)])
    seen = raw > 0
    if not seen.any():
        return None
    return raw / raw[seen].mean()


def row_weights(labels: list[int], sources: list[str]) -> torch.Tensor:
    """Loss weight of each row: ``count(source, label) ** -0.5``, scaled so that the rows of each
    source average 1 (a file's share of the loss is its share of the rows, as unweighted)."""
    if len(labels) != len(sources):
        raise ValueError(f"{len(labels)} labels but {len(sources)} sources")
    counts = Counter(zip(sources, labels))
    raw = torch.tensor([counts[(s, lab)] ** -0.5 for s, lab in zip(sources, labels)], dtype=torch.float32)
    out = torch.empty_like(raw)
    for src in set(sources):
        rows = torch.tensor([s == src for s in sources])
        out[rows] = raw[rows] / raw[rows].mean()
    return out
