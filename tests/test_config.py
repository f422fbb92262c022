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


def test_per_task_budgets_are_read_and_checked():
    cfg = load_config(ROOT / "configs" / "tiny.yaml",
                      ["tasks.ner.max_windows=0", "tasks.ner.repeat=2.5", "tasks.stance.blend_holdout=0.2"])
    assert cfg.tasks["ner"].max_windows == 0 and cfg.tasks["ner"].repeat == 2.5
    assert cfg.tasks["stance"].blend_holdout == 0.2 and cfg.tasks["topic"].repeat == 1.0
    # Budgets at their defaults leave the run folder's hash as it was before they existed.
    base = load_config(ROOT / "configs" / "tiny.yaml")
    assert load_config(ROOT / "configs" / "tiny.yaml", ["tasks.ner.repeat=1"]).fingerprint() == base.fingerprint()
    assert cfg.fingerprint() != base.fingerprint()


@pytest.mark.parametrize("override, message", [
    ("tasks.ner.repeat=0", "tasks.ner.repeat must be a number above 0.0, got 0"),
    ("tasks.stance.blend_holdout=0.9", r"tasks.stance.blend_holdout must be a number in \[0.0, 0.5\], got 0.9"),
    ("tasks.ner.max_windows=-1", "tasks.ner.max_windows must be an int >= 0"),
    ("tasks.topic.repeats=2", r"tasks.topic: unknown key\(s\) \['repeats'\]"),
])
def test_bad_task_budgets_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "tiny.yaml", [override])


def test_epoch_plan_gives_a_repeated_task_its_share():
    from collections import Counter

    from khabar.training.loop import epoch_plan

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["tasks.ner.repeat=3", "sampling_temperature=1", "batch_size=4"])
    sizes = {"topic": [10] * 40, "ner": [10] * 40}
    plan = epoch_plan(sizes, cfg, 0)
    counts = Counter(t for t, _ in plan)
    assert counts["topic"] + counts["ner"] == 10 + 30
    assert counts["ner"] > counts["topic"] * 2
    ner_rows = Counter(i for t, idx in plan if t == "ner" for i in idx)
    assert set(ner_rows) == set(range(40))  # every sentence is seen, in fresh shuffles
