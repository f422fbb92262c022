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
        # NER's own copies of the encoder's top layers (schema.ner_own_layers): token labels and
        # pooled article labels pull the last layers in different directions, and NER trained
        # alone scored 3 points above NER in the three-task mix (README, "Measured results").
        # The copies start as the pretrained layers, so the branch starts as the shared encoder.
        self.ner_layers = own_top_layers(encoder, schema.ner_own_layers) if "ner" in schema.tasks else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                tasks: tuple[str, ...] = ("topic",)) -> dict[str, torch.Tensor]:
        """Logits per requested task: [batch, labels] for topic/stance, [batch, seq, labels] for ner."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        branch = self.ner_layers is not None and "ner" in tasks
        encoded = self.encoder(**kwargs, output_hidden_states=branch)
        hidden = encoded.last_hidden_state
        out: dict[str, torch.Tensor] = {}
        pooled = None
        for task in tasks:
            if task not in self.heads:
                raise KeyError(f"this model has no {task!r} head (it has {list(self.heads)})")
            if task == "ner":
                tokens = (self._ner_branch(encoded.hidden_states, attention_mask) if branch else hidden)
                out[task] = self.heads[task](self.dropout(tokens))
            else:
                if pooled is None:
                    pooled = self.dropout(mean_pool(hidden, attention_mask))
                out[task] = self.heads[task](pooled)
        return out

    def _ner_branch(self, states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor) -> torch.Tensor:
        """NER's own top layers over the shared layers below them (``states``: one per layer,
        embeddings first)."""
        from transformers.masking_utils import create_bidirectional_mask

        hidden = states[-(len(self.ner_layers) + 1)]
        # The mask in the form the encoder's attention implementation expects (eager or SDPA),
        # built by the function the encoder itself uses.
        mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)
        for layer in self.ner_layers:
            hidden = layer(hidden, mask)
        return hidden


def own_top_layers(encoder: nn.Module, count: int) -> nn.ModuleList | None:
    """Copies of ``encoder``'s top ``count`` transformer layers (None for 0).

    Each copy is built with the encoder's own config object, so switching the encoder's attention
    implementation (eager for ONNX export) switches the copies too. Needs a BERT-style encoder
    (``encoder.encoder.layer``), which both khabar backbones are.
    """
    if not count:
        return None
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"ner_own_layers needs a BERT-style encoder with encoder.layer; "
                         f"{type(encoder).__name__} has none")
    if count > len(layers):
        raise ValueError(f"ner_own_layers is {count} but the encoder has {len(layers)} layers")
    copies = nn.ModuleList()
    for index in range(len(layers) - count, len(layers)):
        layer = type(layers[index])(encoder.config, layer_idx=index)
        layer.load_state_dict(layers[index].state_dict())
        copies.append(layer)
    return copies
