"""Where khabar keeps its state, and the environment every entry point gets.

All state lives under one folder, ``KHABAR_HOME`` (default ``.khabar/`` in the checkout, or in the
current directory when installed elsewhere). Importing :mod:`khabar` calls :func:`configure` so
that BentoML, Hugging Face, onnxruntime and Ray see the same folders and never phone home.
"""
from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent

# Telemetry of every library we load is off unless the user explicitly turns it back on.
_TELEMETRY_OFF = {
    "BENTOML_DO_NOT_TRACK": "true",
    "ORT_DISABLE_TELEMETRY": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


def khabar_home() -> Path:
    """The folder that holds backbones, the BentoML store, caches and reports."""
    env = os.environ.get("KHABAR_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").exists():
        return _CHECKOUT / ".khabar"
    return Path.cwd() / ".khabar"


def backbones_dir() -> Path:
    """Where built backbones (the offline encoder) are written."""
    return khabar_home() / "backbones"


def reports_dir() -> Path:
    """Where evaluation and benchmark reports go by default."""
    return khabar_home() / "reports"


def configure() -> Path:
    """Point BentoML and HF at folders under KHABAR_HOME and switch telemetry off.

    Values the user already set are kept. Returns the KHABAR_HOME in force.
    """
    home = khabar_home()
    os.environ.setdefault("KHABAR_HOME", str(home))
    os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
    os.environ.setdefault("HF_HOME", str(home / "hf"))
    for key, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    _forget_cached_tracking_choice()
    return home


def _forget_cached_tracking_choice() -> None:
    """Make an already-imported BentoML read BENTOML_DO_NOT_TRACK again.

    `bentoml serve khabar.serving.service:Khabar` imports BentoML, and its CLI caches
    ``do_not_track()`` (an ``lru_cache``) before our service module, and so this function, runs.
    Without this the arbiter sends its "serve started" event to t.bentoml.com
    (tests/test_no_telemetry.py caught it). BentoML is never imported from here.
    """
    import sys

    module = sys.modules.get("bentoml._internal.utils.analytics.usage_stats")
    cached = getattr(module, "do_not_track", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()
