"""Shared fixtures: an isolated KHABAR_HOME, the tiny backbone, a tiny trained model."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data() -> Path | None:
    """../shared/data (or KHABAR_SHARED_DATA) when present, else None."""
    env = os.environ.get("KHABAR_SHARED_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Every test session writes under its own KHABAR_HOME (BentoML store, HF cache, runs)."""
    home = tmp_path_factory.mktemp("khabar_home")
    os.environ["KHABAR_HOME"] = str(home)
    os.environ["BENTOML_HOME"] = str(home / "bentoml")
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("KHABAR_THREADS", "2")
    # Many tests compare labels across batchings to 1e-6; int8's activation scales are computed per
    # call, so only fp32 is exact there. The int8 default is tested with this unset (test_engines).
    os.environ["KHABAR_ENGINE"] = "fp32"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from khabar.settings import settings

    settings.cache_clear()  # modules imported while collecting may have read KHABAR_THREADS unset
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    yield home


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT with a fixed WordPiece vocabulary (tests/fixtures/tiny_vocab.txt)."""
    from khabar.models.backbones import build_tiny_backbone

    path = build_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"), FIXTURES / "tiny_vocab.txt")
    os.environ["KHABAR_TINY_BACKBONE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_tag(tiny_backbone) -> str:
    """A tiny model trained for all three tasks on data/sample (one epoch), saved in the store."""
    from khabar.training.config import load_config
    from khabar.training.loop import train

    os.environ["KHABAR_SAMPLE"] = str(ROOT / "data" / "sample")
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["epochs=1"])
    return train(cfg, log=lambda m: None)["tag"]


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_tag):
    """The tiny model loaded from the store."""
    from khabar.models.store import load_model

    return load_model(tiny_model_tag)
