"""Start a training run from a stored model's weights (``init_from: TAG``), for retraining.

The encoder is copied whole; each head is copied label by label, so a candidate whose label set
grew (a new topic) keeps every row the base learned and starts the new rows fresh. A task the
stored model lacks keeps its fresh head.
"""
from __future__ import annotations

import torch

from khabar.models.multitask import KhabarModel
from khabar.models.schema import ModelSchema
from khabar.models.store import WEIGHTS, ModelStoreError, model_path


def init_from_stored(model: KhabarModel, tag: str) -> str:
    """Load the weights of stored model ``tag`` into ``model``; returns a one-line summary.

    Raises :class:`ModelStoreError` when the stored encoder does not fit ``model``'s (another
    backbone): then train from the backbone instead.
    """
    from safetensors.torch import load_file

    full, path = model_path(tag)
    if not (path / WEIGHTS).exists():
        raise ModelStoreError(f"model {full} has no {WEIGHTS}; cannot start from it")
    stored = load_file(str(path / WEIGHTS))
    old = ModelSchema.from_json((path / "schema.json").read_text(encoding="utf-8"))

    own = model.state_dict()
    # NER's own top layers (if any) come from the stored model when it has them; otherwise they
    # stay the copies of this encoder's top layers that the model was built with.
    encoder = {k: v for k, v in own.items()
               if k.startswith("encoder.") or (k.startswith("ner_layers.") and k in stored)}
    bad = [k for k, v in encoder.items() if k not in stored or stored[k].shape != v.shape]
    if bad:
        raise ModelStoreError(
            f"model {full} (backbone {old.backbone.get('name', '?')}) does not fit this config's backbone "
            f"({len(bad)} encoder tensors differ, e.g. {bad[0]}); retrain from the backbone (--from backbone)")
    with torch.no_grad():
        for k, v in encoder.items():
            v.copy_(stored[k])
        kept = []
        for task, labels in model.schema.tasks.items():
            before = old.tasks.get(task)
            if before is None or f"heads.{task}.weight" not in stored:
                kept.append(f"{task} new head")
                continue
            head = model.heads[task]
            rows = {lab: i for i, lab in enumerate(before)}
            n = 0
            for i, lab in enumerate(labels):
                if lab in rows:
                    head.weight[i].copy_(stored[f"heads.{task}.weight"][rows[lab]])
                    head.bias[i].copy_(stored[f"heads.{task}.bias"][rows[lab]])
                    n += 1
            kept.append(f"{task} {n}/{len(labels)} labels")
    return f"initialised from {full}: encoder, heads ({', '.join(kept)})"
