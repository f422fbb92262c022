"""One encoder with up to three heads: topic (pooled), stance (pooled pair), entities (tokens)."""
from __future__ import annotations

import torch
from torch import nn

from khabar.models.schema import ModelSchema


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states the attention mask keeps (e5 has no pooler; AraBERT's pooler
    was trained for NSP, so mean pooling serves both backbones)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class KhabarModel(nn.Module):
    """An encoder plus a linear head per task. One forward pass serves any subset of heads."""

    def __init__(self, encoder: nn.Module, schema: ModelSchema, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.schema = schema
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Linear(hidden, len(labels)) for task, labels in schema.tasks.items()}
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                tasks: tuple[str, ...] = ("topic",)) -> dict[str, torch.Tensor]:
        """Logits per requested task: [batch, labels] for topic/stance, [batch, seq, labels] for ner."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        out: dict[str, torch.Tensor] = {}
        pooled = None
        for task in tasks:
            if task not in self.heads:
                raise KeyError(f"this model has no {task!r} head (it has {list(self.heads)})")
            if task == "ner":
                out[task] = self.heads[task](self.dropout(hidden))
            else:
                if pooled is None:
                    pooled = self.dropout(mean_pool(hidden, attention_mask))
                out[task] = self.heads[task](pooled)
        return out
