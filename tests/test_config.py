"""Training configs: overrides are typed like the fields they set, and wrong types are named."""
from __future__ import annotations

from pathlib import Path

import pytest

from khabar.training.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _vars(monkeypatch):
    monkeypatch.setenv("KHABAR_TINY_BACKBONE", "/nowhere")
    monkeypatch.setenv("KHABAR_SAMPLE", str(ROOT / "data" / "sample"))


def test_overrides_written_as_people_write_them_get_the_field_type():
    # YAML reads 2e-5 (no dot) as a string; a string learning rate used to crash the optimizer.
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["lr=2e-5", "head_lr=1", "epochs=2", "max_steps_per_epoch=100"])
    assert cfg.lr == 2e-5 and isinstance(cfg.lr, float)
    assert cfg.head_lr == 1.0 and isinstance(cfg.head_lr, float)
    assert cfg.epochs == 2 and cfg.max_steps_per_epoch == 100
    assert load_config(ROOT / "configs" / "tiny.yaml", ["max_steps_per_epoch=null"]).max_steps_per_epoch is None


@pytest.mark.parametrize("override, message", [
    ("lr=fast", "lr must be float, got 'fast'"),
    ("epochs=1.5", "epochs must be int, got 1.5"),
    ("repair_bio=3", "repair_bio must be bool, got 3"),
    ("epochs=null", "epochs must be int, got None"),
])
def test_wrong_types_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(ROOT / "configs" / "tiny.yaml", [override])
