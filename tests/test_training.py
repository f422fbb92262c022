"""The training loop: it learns a separable task, resumes after SIGKILL, stores a full artifact."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from khabar.training.config import ConfigError, from_dict, load_config

SPORT = ["المباراة", "الفريق", "الدوري", "الملعب", "المدرب", "هدف"]
ECONOMY = ["النفط", "البنك", "السوق", "الدولار", "التضخم", "الاستثمار"]
FILLER = ["في", "من", "على", "قال", "يوم", "بعد", "قبل", "مع"]


def toy_files(folder: Path, n: int = 48, seed: int = 0) -> dict[str, Path]:
    """A topic task separable by vocabulary, a stance task separable by a verb, and NER
    sentences where one fixed word is always a LOC."""
    rng = random.Random(seed)
    topic, stance, ner = [], [], []
    for i in range(n):
        label = "sport" if i % 2 else "economy"
        words = [rng.choice(SPORT if i % 2 else ECONOMY) for _ in range(6)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        topic.append({"id": f"t{i}", "title": "", "text": " ".join(words), "label": label})
        verb, lab = [("ترحب", "favor"), ("ترفض", "against")][i % 2]
        stance.append({"id": f"s{i}", "target": "الاتفاق", "text": f"الحكومة {verb} {rng.choice(FILLER)} الاتفاق",
                       "label": lab})
        ner.append([("زار", "O"), ("الوزير", "O"), ("بغداد", "B-LOC"), (rng.choice(FILLER), "O")])
    paths = {"topic": folder / "topic.jsonl", "stance": folder / "stance.jsonl", "ner": folder / "ner.conll"}
    paths["topic"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic), encoding="utf-8")
    paths["stance"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stance), encoding="utf-8")
    paths["ner"].write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in s) for s in ner) + "\n", encoding="utf-8")
    return paths


def toy_config(backbone: Path, paths: dict[str, Path], **over) -> dict:
    cfg = {
        "name": "toy", "backbone": str(backbone), "max_length": 32, "stride": 8, "epochs": 6,
        "batch_size": 8, "lr": 2e-3, "head_lr": 5e-3, "warmup_ratio": 0.0, "patience": 6, "seed": 1,
        "checkpoint_every_steps": 0,
        "tasks": {t: {"train": str(p), "dev": str(p)} for t, p in paths.items()},
    }
    cfg.update(over)
    return cfg


def test_multitask_run_learns_a_separable_toy_task(tiny_backbone, tmp_path):
    from khabar.training.loop import train

    cfg = from_dict(toy_config(tiny_backbone, toy_files(tmp_path)))
    result = train(cfg, log=lambda m: None)
    dev = result["dev_metrics"]
    assert dev["topic"]["topic"]["accuracy"] >= 0.95
    assert dev["stance"]["stance"]["accuracy"] >= 0.95
    assert dev["ner"]["ner"]["micro_f1"] >= 0.95
    assert result["tag"].startswith("khabar:")


def test_dev_only_after_the_last_epoch_keeps_the_last_epoch(tiny_backbone, tmp_path):
    """dev_every_epoch: false skips the dev pass of every epoch but the last, whose weights are
    the ones stored (there is nothing to compare them with)."""
    from khabar.models.store import load_model
    from khabar.training.loop import run_dir_for, train

    cfg = from_dict(toy_config(tiny_backbone, toy_files(tmp_path), epochs=3, dev_every_epoch=False))
    lines: list[str] = []
    result = train(cfg, log=lines.append)
    log = [json.loads(x) for x in (run_dir_for(cfg) / "log.jsonl").read_text().splitlines()]
    assert [e["dev"] is None for e in log] == [True, True, False]
    assert sum("not scored" in line for line in lines) == 2
    training = load_model(result["tag"]).training
    assert training["best_epoch"] == 3
    assert training["dev_metrics"] == log[-1]["dev"]


def test_newer_fields_at_their_defaults_keep_old_run_folders(tiny_backbone, tmp_path):
    paths = toy_files(tmp_path, n=8)
    plain = from_dict(toy_config(tiny_backbone, paths))
    explicit = from_dict(toy_config(tiny_backbone, paths, dev_every_epoch=True, blend_max_rows=2000,
                                    ner_own_layers=0, freeze_layers=0))
    assert plain.fingerprint() == explicit.fingerprint()
    assert from_dict(toy_config(tiny_backbone, paths, blend_max_rows=1000)).fingerprint() != plain.fingerprint()
    with pytest.raises(ConfigError, match="blend_max_rows"):
        from_dict(toy_config(tiny_backbone, paths, blend_max_rows=10))


def test_frozen_embeddings_stay_pretrained_and_weighted_losses_still_learn(tiny_backbone, tmp_path):
    from safetensors.torch import load_file

    from khabar.models.backbones import load_encoder
    from khabar.models.store import model_path
    from khabar.training.loop import train

    raw = toy_config(tiny_backbone, toy_files(tmp_path), name="frozen", freeze_embeddings=True,
                     class_weighting="sqrt_inverse")
    lines: list[str] = []
    result = train(from_dict(raw), log=lines.append)
    assert result["dev_metrics"]["topic"]["topic"]["accuracy"] >= 0.95
    assert any(line.startswith("stance: loss weights") for line in lines), lines
    pretrained = load_encoder(str(tiny_backbone)).state_dict()
    _, path = model_path(result["tag"])
    after = load_file(str(path / "model.safetensors"))

    def stored(suffix: str):
        return next(v for k, v in after.items() if k.endswith(suffix))

    assert stored("word_embeddings.weight").equal(pretrained["embeddings.word_embeddings.weight"]), \
        "a frozen embedding table changed during training"
    query = "encoder.layer.0.attention.self.query.weight"
    assert not stored(query).equal(pretrained[query]), "the layers above the embeddings must still train"


def test_collapsed_heads_names_each_dev_set_whose_rows_all_got_one_label():
    from khabar.training.loop import collapsed_heads
    from khabar.training.scoring import classification_metrics, ner_metrics

    gold = ["against", "favor", "favor", "neutral"]
    metrics = {"stance": {"ans": classification_metrics(gold, ["favor"] * 4),
                          "mawqif": classification_metrics(gold, gold)},
               "ner": {"anercorp": ner_metrics([["B-LOC", "O"]], [["O", "O"]])}}
    assert collapsed_heads(metrics) == [("stance", "ans", "favor")]
    assert collapsed_heads({}) == []


def test_artifact_holds_weights_schema_and_provenance(tiny_model_tag):
    from khabar.models.store import load_model, model_path

    _, path = model_path(tiny_model_tag)
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "schema.json", "training.json", "encoder", "tokenizer", "log.jsonl",
            "curves.png"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))], "no pickle in an artifact"
    loaded = load_model(tiny_model_tag)
    assert set(loaded.schema.tasks) == {"topic", "stance", "ner"}
    assert loaded.schema.tasks["stance"] == ["favor", "against", "neutral", "unrelated"]
    training = loaded.training
    for task in ("topic", "stance", "ner"):
        src = training["data"][task]["train"][0]
        assert len(src["sha256"]) == 64 and src["n"] > 0
    assert training["dev_metrics"] and training["code_version"]
    assert training["config"]["name"] == "tiny"


def test_store_refuses_pickle_weights(tiny_model_tag, tmp_path):
    import shutil

    import bentoml
    from khabar.models.store import ModelStoreError, load_model, model_path

    _, path = model_path(tiny_model_tag)
    with bentoml.models.create("khabar-pickle") as ref:
        for name in ("schema.json", "training.json"):
            shutil.copy(path / name, Path(ref.path) / name)
        (Path(ref.path) / "pytorch_model.bin").write_bytes(b"not safetensors")
        tag = str(ref.tag)
    with pytest.raises(ModelStoreError, match="refuses pickle"):
        load_model(tag)
    with pytest.raises(ModelStoreError, match="no model"):
        load_model("khabar:doesnotexist")


def test_killed_run_resumes_from_its_checkpoint(tiny_backbone, tmp_path):
    paths = toy_files(tmp_path, n=160)
    raw = toy_config(tiny_backbone, paths, epochs=3, checkpoint_every_steps=3, name="resume")
    import yaml

    cfg_file = tmp_path / "resume.yaml"
    cfg_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    cmd = [sys.executable, "-m", "khabar.cli", "train", "--config", str(cfg_file)]
    env = {**os.environ, "KHABAR_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    from khabar.training.loop import run_dir_for

    run_dir = run_dir_for(load_config(cfg_file))
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "LATEST").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (run_dir / "LATEST").exists(), "the run wrote no checkpoint before being killed"
    assert not (run_dir / "done.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr
    assert done.stdout.strip().startswith("khabar:")
    assert json.loads((run_dir / "done.json").read_text())["tag"] == done.stdout.strip()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert "already trained" in again.stderr


def test_config_errors_name_the_key(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict({"name": "x", "backbone": "b", "tasks": {"topic": {"train": "a"}}, "epohcs": 3})
    with pytest.raises(ConfigError, match="unknown task"):
        from_dict({"name": "x", "backbone": "b", "tasks": {"sentiment": {"train": "a"}}})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nbackbone: b\ntasks:\n  topic:\n    train: ${NOPE_NOT_SET}/t.jsonl\n")
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        load_config(cfg)
    monkeypatch.setenv("NOPE_NOT_SET", "/data")
    assert load_config(cfg, ["epochs=7"]).tasks["topic"].train[0].path == "/data/t.jsonl"
    assert load_config(cfg, ["epochs=7"]).epochs == 7


def test_per_source_row_weights_train(tiny_backbone, tmp_path):
    from khabar.training.loop import train

    raw = toy_config(tiny_backbone, toy_files(tmp_path), name="per-source", class_weighting="sqrt_inverse_per_source")
    lines: list[str] = []
    result = train(from_dict(raw), log=lines.append)
    assert result["dev_metrics"]["topic"]["topic"]["accuracy"] >= 0.95
    assert any(line.startswith("stance: row weights") for line in lines), lines
    assert not any(line.startswith("stance: loss weights") for line in lines)
