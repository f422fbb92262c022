"""Per-channel smoothing of the feed-forward inputs before int8 quantization (SmoothQuant).

Why: ONNX Runtime's dynamic quantization gives each activation tensor one scale per call. In the
offline encoder the input of every feed-forward block has one channel that reaches 19-44 while the
median channel peaks near 1.7, and the input of the down-projection peaks at up to 62 (measured on
the offline.yaml model, 48 windows of news text). A scale sized for the outlier leaves the other
channels a handful of int8 levels. The int8 graph then lost 2.4 points of ans macro-F1.

Smoothing (Xiao et al., "SmoothQuant", ICML 2023) divides input channel j of a linear layer by s_j
and multiplies column j of its weight by s_j: the same function in exact arithmetic, with the
range moved from the activations into the weights, which are quantized per channel and offline.
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha). In a post-LayerNorm encoder (BERT) the LayerNorm
output also feeds the residual, so the division cannot be folded into LayerNorm's gain as in
pre-LN language models; it stays an explicit multiply in front of each smoothed linear.

Activation maxima come from 96 windows of the project's own sample articles
(``data/sample/topic.jsonl``, written for khabar; 9,364 tokens), which the package ships as
``khabar.sample``, so a checkout and an installed wheel calibrate alike. Measured on the
offline.yaml model (full ans and baly2018 dev, ANERcorp dev; fp32 0.812 / 0.354 / 0.669):

| int8 graph | ans | baly2018 | NER |
|---|---:|---:|---:|
| not smoothed | 0.788 | 0.359 | 0.662 |
| alpha 0.75, 96 windows of the sample articles (the default) | 0.817 | 0.356 | 0.665 |
| alpha 0.5, same calibration | 0.829 | 0.357 | 0.659 |
| alpha 0.75, 24 hand-written sentences (733 tokens) | 0.826 | 0.346 | 0.654 |
| alpha 0.75, random token ids | 0.799 | 0.372 | 0.668 |

Only the default keeps all three within 1 point of fp32. The 24 sentences are worse on NER:
fewer tokens see fewer of the extreme values.
"""
from __future__ import annotations

import json
from importlib.resources import files
from typing import Sequence

import torch
from torch import nn

# The linear layers whose inputs carry the outliers: a BERT layer's feed-forward up-projection
# (``intermediate.dense``) and the two output projections (``output.dense``, attention and FFN).
SMOOTHED_SUFFIXES = ("intermediate.dense", "output.dense")
DEFAULT_ALPHA = 0.75
SAMPLE_LIMIT = 64  # articles: ~96 windows of 128 tokens, as measured


class SmoothedLinear(nn.Module):
    """``linear(x)`` computed as ``linear_scaled(x / s)``: the input is divided per channel."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight * scale[None, :].to(linear.weight.dtype))
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias)
        self.register_buffer("inverse_scale", (1.0 / scale).to(linear.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)


def smoothed_targets(encoder: nn.Module) -> dict[str, nn.Linear]:
    """The encoder's linear layers whose inputs are smoothed, by module name."""
    return {name: mod for name, mod in encoder.named_modules()
            if isinstance(mod, nn.Linear) and name.endswith(SMOOTHED_SUFFIXES)}


def calibration_texts() -> tuple[list[str], str]:
    """The texts smoothing is calibrated on (the first articles of the project's sample,
    ``data/sample/topic.jsonl``, written for khabar), and where they came from."""
    articles = files("khabar.sample") / "topic.jsonl"  # package data: data/sample/ in the checkout
    rows = [json.loads(line) for line in articles.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows[:SAMPLE_LIMIT]], f"data/sample/topic.jsonl ({min(len(rows), SAMPLE_LIMIT)} articles)"


def text_calibration(tokenizer, texts: Sequence[str] | None = None, *, max_length: int, stride: int,
                     max_windows: int = 96, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Padded encoder batches of the first ``max_windows`` windows of ``texts`` (default:
    :func:`calibration_texts`), normalized and windowed as the predictor does it (pass the
    model schema's ``max_length`` and ``stride``)."""
    from khabar.models.normalize import normalize
    from khabar.models.windows import collate, make_windows

    texts = calibration_texts()[0] if texts is None else list(texts)
    windows = make_windows(tokenizer, [normalize(t).text for t in texts], max_length=max_length,
                           stride=stride)[:max_windows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return [collate(windows[i:i + batch_size], pad) for i in range(0, len(windows), batch_size)]


def input_maxima(encoder: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Largest absolute input value per channel of every smoothed linear, over ``batches``."""
    maxima: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_mod, inputs) -> None:
            x = inputs[0].detach()
            peak = x.reshape(-1, x.shape[-1]).abs().amax(0).float()
            maxima[name] = peak if name not in maxima else torch.maximum(maxima[name], peak)
        return record

    handles = [mod.register_forward_pre_hook(hook(name)) for name, mod in smoothed_targets(encoder).items()]
    try:
        with torch.inference_mode():
            for batch in batches:
                encoder(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def smooth_encoder(encoder: nn.Module, batches: list[dict[str, torch.Tensor]], *,
                   alpha: float = DEFAULT_ALPHA) -> int:
    """Replace the encoder's feed-forward and output linears with smoothed equivalents, in place.

    ``encoder`` is any module called as ``encoder(**batch)``: the bare encoder, or the export
    wrapper around the whole model, whose forward also runs NER's own top layers.

    Returns how many linears were smoothed (0 for an architecture without BERT's module names).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    maxima = input_maxima(encoder, batches)
    for name, linear in smoothed_targets(encoder).items():
        if name not in maxima:
            continue  # not reached by the forward pass
        x_max = maxima[name].clamp(min=1e-5)
        w_max = linear.weight.detach().abs().amax(0).float().clamp(min=1e-5)
        scale = x_max.pow(alpha) / w_max.pow(1.0 - alpha)
        parent_name, _, attr = name.rpartition(".")
        setattr(encoder.get_submodule(parent_name) if parent_name else encoder, attr,
                SmoothedLinear(linear, scale))
    return len(maxima)
