"""Which encoder parameters training leaves as pretrained (``freeze_embeddings``, ``freeze_layers``).

Two reasons to freeze, both about time on a CPU:

- The offline encoder's word-embedding table is 43M of its 65M parameters; its dense gradient and
  Adam update cost ~10% of a step, and a few thousand labelled rows move it little.
- The bottom layers of a pretrained encoder change least in fine-tuning. Freezing the bottom N
  layers saves their *backward* pass (about twice their forward), not only their update, but only
  when nothing below them learns: autograd walks back to the lowest tensor that needs a gradient,
  so one trainable LayerNorm in the embedding module would make it run back through every frozen
  layer. ``freeze_layers`` therefore freezes the whole embedding module with them.
"""
from __future__ import annotations

from torch import nn


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-style encoder (``encoder.encoder.layer``)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"freeze_layers needs a BERT-style encoder with encoder.layer; "
                         f"{type(encoder).__name__} has none")
    return layers


def freeze_encoder(encoder: nn.Module, *, embeddings: bool = False, layers: int = 0) -> str | None:
    """Freeze the word-embedding table (``embeddings``) and, with ``layers`` = N > 0, the whole
    embedding module and the bottom N transformer layers. Returns a line for the run log, or None
    when nothing is frozen.

    At least one layer must keep learning: N must be under the encoder's layer count.
    """
    if layers < 0:
        raise ValueError(f"freeze_layers must be 0 or more, got {layers}")
    if layers:
        stack = encoder_layers(encoder)
        if layers >= len(stack):
            raise ValueError(f"freeze_layers is {layers} but the encoder has {len(stack)} layers; "
                             f"at most {len(stack) - 1} can be frozen")
        frozen = [encoder.get_input_embeddings()]
        embedding_module = getattr(encoder, "embeddings", None)
        if embedding_module is not None:
            frozen.append(embedding_module)
        frozen += list(stack[:layers])
        for module in frozen:
            module.requires_grad_(False)
    elif embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    else:
        return None
    count = sum(p.numel() for p in encoder.parameters() if not p.requires_grad)
    what = f"the embeddings and layers 1-{layers}" if layers else "the word-embedding table"
    return f"frozen: {what} ({count / 1e6:.1f}M parameters kept as they start: pretrained, or as init_from left them)"
