"""Training configs: typed values, overrides that reach list elements, errors that name the key,
and run-folder hashes that stay what they were."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from khabar.training.config import ConfigError, from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
OFFLINE = ROOT / "configs" / "offline.yaml"


@pytest.fixture(autouse=True)
def _vars(monkeypatch):
    monkeypatch.setenv("KHABAR_TINY_BACKBONE", "/nowhere")
    monkeypatch.setenv("KHABAR_SAMPLE", str(ROOT / "data" / "sample"))
    monkeypatch.setenv("KHABAR_DATA", "/data")


def test_overrides_written_as_people_write_them_get_the_field_type():
    # YAML reads 2e-5 (no dot) as a string; a string learning rate used to crash the optimizer.
    cfg = load_config(TINY, ["lr=2e-5", "head_lr=1", "epochs=2", "max_steps_per_epoch=100"])
    assert cfg.lr == 2e-5 and isinstance(cfg.lr, float)
    assert cfg.head_lr == 1.0 and isinstance(cfg.head_lr, float)
    assert cfg.epochs == 2 and cfg.max_steps_per_epoch == 100
    assert load_config(TINY, ["max_steps_per_epoch=null"]).max_steps_per_epoch is None


@pytest.mark.parametrize("override, message", [
    ("lr=fast", "lr must be a valid number, got 'fast'"),
    ("epochs=1.5", "epochs must be a valid integer, got 1.5"),
    ("repair_bio=3", "repair_bio must be a valid boolean, got 3"),
    ("epochs=null", "epochs must be a valid integer, got None"),
    ("lr=true", "lr must be a number, not true/false, got True"),  # pydantic alone would read 1.0
    ("tasks.topic.train.0.limit=many", "tasks.topic.train.0.limit must be a valid integer, got 'many'"),
    ("tasks.topic.labels=[yes, no]", "tasks.topic.labels.0 must be a valid string, got True"),
    ("tasks.topic.dev.0.holdout={take: heldout, fraction: 2}",
     "tasks.topic.dev.0.holdout.fraction must be less than 1, got 2"),
])
def test_wrong_types_are_refused_naming_the_key_and_what_it_must_be(override, message):
    with pytest.raises(ConfigError, match=f"^{TINY}: .*{re.escape(message)}"):
        load_config(TINY, [override])


@pytest.mark.parametrize("override, message", [
    ("epohcs=3", "unknown key epohcs (did you mean epochs?); known: average_last_epochs, backbone, batch_size"),
    ("tasks.topic.repeats=2", "unknown key tasks.topic.repeats (did you mean repeat?); known: blend_holdout, dev"),
    ("tasks.topic.train.0.limt=5", "unknown key tasks.topic.train.0.limt (did you mean limit?); a topic source takes"),
    ("tasks.topic.dev.0.holdout.tkae=heldout", "unknown key tasks.topic.dev.0.holdout.tkae (did you mean take?)"),
    ("tasks.sentiment.train=a.jsonl", "unknown task 'sentiment'; use topic, stance, ner"),
])
def test_unknown_keys_are_refused_naming_the_key_and_the_known_ones(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(TINY, [override])


def test_bug_16_an_element_of_a_list_of_sources_can_be_set():
    # Used to end in a bare AttributeError (the override walker called setdefault on a list).
    cfg = load_config(OFFLINE, ["tasks.stance.train.0.limit=500", "tasks.stance.train.2.holdout.fraction=0.3"])
    ans, baly, mawqif = cfg.tasks["stance"].train
    assert (ans.limit, baly.limit, mawqif.limit) == (500, None, None)
    assert mawqif.holdout == {"fraction": 0.3, "take": "train", "seed": 13}


def test_bug_16_the_train_help_example_sets_the_first_sources_limit():
    # `train --help` shows this example; on a source written as a mapping it used to be stored
    # silently as the reader option {'0': {'limit': 500}} and the limit stayed 3000.
    [topic] = load_config(OFFLINE, ["tasks.topic.train.0.limit=500"]).tasks["topic"].train
    assert topic.limit == 500 and topic.options == {}


def test_a_source_written_as_a_bare_path_can_be_set_too():
    cfg = load_config(TINY, ["tasks.topic.train.0.limit=50", "tasks.ner.train.skip_bad=true"])
    [topic], [ner] = cfg.tasks["topic"].train, cfg.tasks["ner"].train
    assert topic.path == str(ROOT / "data" / "sample" / "topic.jsonl") and topic.limit == 50
    assert ner.skip_bad is True  # a key after a list of one source addresses that source


def test_the_readme_override_on_a_single_source_still_works():
    assert load_config(OFFLINE, ["tasks.topic.train.limit=5000"]).tasks["topic"].train[0].limit == 5000


@pytest.mark.parametrize("override, message", [
    ("tasks.stance.train.3.limit=1", "tasks.stance.train has 3 element(s); index 3 is out of range"),
    ("tasks.stance.train.limit=1", "tasks.stance.train is a list of 3; pick an element by its index, "
                                   "e.g. tasks.stance.train.0.limit"),
    ("epochs.max=1", "epochs is 3, not a mapping or a list, so it has no 'max'"),
    ("epochs", "must look like key=value"),
])
def test_a_set_path_that_cannot_be_followed_is_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(f"override '{override}'") + ".*" + re.escape(message)):
        load_config(OFFLINE, [override])


def test_per_task_budgets_are_read_and_checked():
    cfg = load_config(TINY, ["tasks.ner.max_windows=0", "tasks.ner.repeat=2.5", "tasks.stance.blend_holdout=0.2"])
    assert cfg.tasks["ner"].max_windows == 0 and cfg.tasks["ner"].repeat == 2.5
    assert cfg.tasks["stance"].blend_holdout == 0.2 and cfg.tasks["topic"].repeat == 1.0
    # Budgets at their defaults leave the run folder's hash as it was before they existed.
    base = load_config(TINY)
    assert load_config(TINY, ["tasks.ner.repeat=1"]).fingerprint() == base.fingerprint()
    assert cfg.fingerprint() != base.fingerprint()


@pytest.mark.parametrize("override, message", [
    ("tasks.ner.repeat=0", "tasks.ner.repeat must be greater than 0, got 0"),
    ("tasks.stance.blend_holdout=0.9", "tasks.stance.blend_holdout must be less than or equal to 0.5, got 0.9"),
    ("tasks.ner.max_windows=-1", "tasks.ner.max_windows must be greater than or equal to 0, got -1"),
    ("tasks.topic.train=[]", "tasks.topic.train must have at least 1 item, got []"),
    ("stride=32", "stride 32 must be under half of max_length 64"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(TINY, [override])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path, monkeypatch):
    cfg = load_config(path)
    assert cfg.tasks and all(data.train for data in cfg.tasks.values())
    monkeypatch.delenv("KHABAR_DATA")  # the ${KHABAR_DATA:-../shared/data} default
    load_config(path)


def test_data_paths_come_from_the_environment_or_the_default(monkeypatch):
    assert load_config(OFFLINE).tasks["ner"].train[0].path == "/data/ner/anercorp/train.conll"
    monkeypatch.delenv("KHABAR_DATA")
    assert load_config(OFFLINE).tasks["ner"].train[0].path == "../shared/data/ner/anercorp/train.conll"


def test_the_run_folder_hash_of_the_recommended_config_is_unchanged():
    # Computed with the hand-written config code before the pydantic models (commit d646b4e),
    # KHABAR_DATA=/data. Run folders are named by this hash, so a rerun resumes; a change here
    # would orphan every checkpoint of the configs in use.
    # The config itself has since gained Mawqif's Arabic target names (a new run folder, meant):
    # without them it must still hash as it did.
    # So has (session 5) a bigger share of batches for stance and a smaller one for NER and topic.
    cfg = load_config(OFFLINE)
    for src in cfg.tasks["stance"].train + cfg.tasks["stance"].dev:
        src.options.pop("target_map", None)
    cfg.tasks["stance"].repeat, cfg.tasks["ner"].repeat, cfg.tasks["topic"].train[0].limit = 1.0, 2.5, 3000
    # And (session 7) the mean of the last two epochs' weights, and Mawqif's split pinned to seed 13.
    cfg.average_last_epochs = 1
    for src in cfg.tasks["stance"].train + cfg.tasks["stance"].dev:
        if src.holdout:
            src.holdout.pop("seed")
    assert cfg.fingerprint() == "dd52e31495e2"
    # A stored config (training.json, read back by retrain and hybrid) gives the same hash.
    assert from_dict(cfg.to_dict()).fingerprint() == "dd52e31495e2"


def test_sources_keep_the_dataclass_helpers_other_modules_use():
    # training/hybrid.py calls dataclasses.replace on a source, eval/baseline.py dataclasses.fields.
    [topic] = load_config(OFFLINE).tasks["topic"].train
    assert dataclasses.replace(topic, limit=None).limit is None and topic.limit == 2500
    assert "holdout" in {f.name for f in dataclasses.fields(topic)}


def test_the_train_command_reports_a_bad_set_in_one_line(monkeypatch):
    from typer.testing import CliRunner

    from khabar.cli import app

    monkeypatch.delenv("KHABAR_DATA")
    res = CliRunner().invoke(app, ["train", "--config", str(OFFLINE), "--set", "tasks.stance.train.0.limt=500"])
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines() == [
        f"error: {OFFLINE}: unknown key tasks.stance.train.0.limt (did you mean limit?); a stance source takes "
        "path, name, label_map, limit, holdout, skip_bad, options, id_field, label_field, labels, split, "
        "target_field, target_map, text_field"]


def test_tasks_keeps_only_the_named_tasks_and_the_rest_of_the_recipe():
    whole = load_config(OFFLINE)
    alone = load_config(OFFLINE, ["seed=7"], ["stance"])
    assert list(alone.tasks) == ["stance"] and alone.seed == 7
    assert alone.tasks["stance"] == whole.tasks["stance"]
    assert (alone.lr, alone.epochs, alone.max_length) == (whole.lr, whole.epochs, whole.max_length)
    # A run of a task alone lives in its own run folder, never resuming the three-task run's.
    assert load_config(OFFLINE, [], ["stance"]).fingerprint() != whole.fingerprint()
    assert list(load_config(OFFLINE, [], ["ner", "topic"]).tasks) == ["topic", "ner"]


@pytest.mark.parametrize("tasks, message", [
    (["stanse"], "does not train 'stanse'; its tasks are topic, stance, ner"),
    ([" ", ""], "--tasks names no task"),
])
def test_tasks_refuses_a_task_the_config_does_not_train(tasks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(OFFLINE, [], tasks)


def test_the_train_command_names_an_unknown_task_in_one_line(monkeypatch):
    from typer.testing import CliRunner

    from khabar.cli import app

    res = CliRunner().invoke(app, ["train", "--config", str(OFFLINE), "--tasks", "stance,entities"])
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines() == [
        f"error: {OFFLINE} does not train 'entities'; its tasks are topic, stance, ner"]


def test_epoch_plan_gives_a_repeated_task_its_share():
    from collections import Counter

    from khabar.training.loop import epoch_plan

    cfg = load_config(TINY, ["tasks.ner.repeat=3", "sampling_temperature=1", "batch_size=4"])
    sizes = {"topic": [10] * 40, "ner": [10] * 40}
    plan = epoch_plan(sizes, cfg, 0)
    counts = Counter(t for t, _ in plan)
    assert counts["topic"] + counts["ner"] == 10 + 30
    assert counts["ner"] > counts["topic"] * 2
    ner_rows = Counter(i for t, idx in plan if t == "ner" for i in idx)
    assert set(ner_rows) == set(range(40))  # every sentence is seen, in fresh shuffles
