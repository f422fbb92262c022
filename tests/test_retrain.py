"""Retraining without a server: which task a file is, merging rules, the gate's rules, starting
from a stored model, the merged set and config a retraining builds, and the CLI's errors.

Models here are stored untrained (a second each); tests/test_retrain_e2e.py trains for real.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from khabar.eval.gate import GatePolicy, decide, format_verdict
from khabar.training.merge import MergeError, infer_task, merge_rows, parse_new
from khabar.training.readers import NerExample, StanceExample, TopicExample
from test_training import toy_config, toy_files


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- which task


def test_task_comes_from_format_fields_or_prefix(tmp_path):
    files = toy_files(tmp_path, n=4)
    assert infer_task(files["topic"]) == "topic"
    assert infer_task(files["stance"]) == "stance"
    assert infer_task(files["ner"]) == "ner"
    assert infer_task(_jsonl(tmp_path / "n.jsonl", [{"tokens": ["a"], "ner_tags": ["O"]}])) == "ner"
    (tmp_path / "s.csv").write_text("id,target,text,label\n1,t,x,favor\n", encoding="utf-8")
    assert infer_task(tmp_path / "s.csv") == "stance"
    assert parse_new(f"stance:{files['topic']}") == ("stance", files["topic"])
    with pytest.raises(MergeError, match="--new topic:"):
        infer_task(_jsonl(tmp_path / "odd.jsonl", [{"headline": "x", "category": "y"}]))
    with pytest.raises(MergeError, match="does not exist"):
        infer_task(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------- merging


def _topic(id_: str, text: str, label: str) -> TopicExample:
    return TopicExample(id=id_, text=text, label=label)


def test_newer_rows_replace_duplicates_and_win_conflicts():
    base = [(_topic("a1", "ارتفع سعر النفط اليوم", "economy"), "base.jsonl", False),
            (_topic("a2", "فاز الفريق بالمباراة", "sport"), "base.jsonl", False),
            (_topic("a3", "افتتح المعرض الدولي للكتاب", "culture"), "base.jsonl", False)]
    new = [
        # The same text with tashkeel and tatweel: a duplicate by normalized text, same label.
        (_topic("n1", "ارتفعَ سعرُ النفـــط اليوم", "economy"), "new.jsonl", True),
        # The same text, another label: a conflict; the newer label wins.
        (_topic("n2", "فاز الفريق بالمباراة", "culture"), "new.jsonl", True),
        # The same id with corrected text: replaces the old row.
        (_topic("a3", "افتتح معرض الكتاب الدولي في الرباط", "culture"), "new.jsonl", True),
        # A held-out text: must not be trained on.
        (_topic("n4", "نص من مجموعة التقييم", "economy"), "new.jsonl", True),
        (_topic("n5", "أطلقت الشركة هاتفا جديدا", "technology"), "new.jsonl", True),
    ]
    held = {"نص من مجموعة التقييم"}
    m = merge_rows("topic", base + new, held, known_labels=["culture", "economy", "sport"])
    by_id = {e.id: e for e in m.examples}
    assert set(by_id) == {"n1", "n2", "a3", "n5"}
    assert by_id["n2"].label == "culture"
    assert by_id["a3"].text.startswith("افتتح معرض الكتاب")
    assert m.duplicates == {"same_id": 1, "same_text": 1}
    assert len(m.conflicts) == 1
    c = m.conflicts[0]
    assert (c["old"]["label"], c["new"]["label"], c["why"]) == ("sport", "culture", "same_text")
    assert m.heldout_dropped == 1 and m.new_kept == 4 and m.new_labels == ["technology"]
    assert (m.base_rows, m.new_rows) == (3, 5)


def test_what_counts_as_the_same_row_depends_on_the_task():
    # Stance: the same text toward another target is another example.
    rows = [(StanceExample("s1", "الاتفاق", "رحبت الحكومة بالاتفاق", "favor"), "b.jsonl", False),
            (StanceExample("s2", "الحكومة", "رحبت الحكومة بالاتفاق", "neutral"), "n.jsonl", True)]
    assert len(merge_rows("stance", rows).examples) == 2
    # NER: ids are positions in a file and never match; the same sentence with other tags conflicts.
    rows = [(NerExample("a-0", ("زار", "بغداد"), ("O", "B-LOC")), "a.conll", False),
            (NerExample("a-0", ("زار", "عمان"), ("O", "B-LOC")), "a.conll", True),
            (NerExample("b-1", ("زار", "بغداد"), ("O", "B-ORG")), "b.conll", True)]
    m = merge_rows("ner", rows)
    assert [e.tokens[1] for e in m.examples] == ["عمان", "بغداد"]
    assert m.conflicts[0]["new"]["label"] == "O B-ORG"
    # Ids the reader made up (<file stem>-<line>) say nothing across files.
    rows = [(_topic("new-3", "نص أول", "sport"), "data/new.jsonl", False),
            (_topic("new-3", "نص ثان", "sport"), "other/new.jsonl", True)]
    assert len(merge_rows("topic", rows).examples) == 2
    # Separate base datasets may reuse ids: both rows stay, with unique ids in the merged file.
    rows = [(_topic("1", "نص أول", "sport"), "ans.jsonl", False),
            (_topic("1", "نص ثان", "sport"), "baly.jsonl", False)]
    assert [e.id for e in merge_rows("topic", rows).examples] == ["1", "1~2"]


# ---------------------------------------------------------------------------- the gate


def _cmp(**deltas: float) -> dict:
    """A compare_runs-shaped comparison with one file per task, base at 0.8."""
    sets = {f"{t}/x": {"task": t, "metric": "macro_f1", "base": 0.8, "candidate": 0.8 + d, "delta": d,
                       "ci95": [d - 0.01, d + 0.01], "p_bootstrap": 0.5} for t, d in deltas.items()}
    tasks = {t: {"metric": "macro_f1", "delta": d, "ci95": [d - 0.01, d + 0.01], "p_bootstrap": 0.5, "files": 1}
             for t, d in deltas.items()}
    return {"base": "khabar:base", "candidate": "khabar:cand", "sets": sets, "tasks": tasks}


def test_gate_allows_small_drops_but_not_on_tasks_with_new_data():
    ok = decide(_cmp(topic=0.02, stance=-0.004, ner=-0.005), base_tasks=["topic", "stance", "ner"],
                new_data_tasks=["topic"])
    assert ok["passed"] and ok["verdict"] == "pass"
    assert all(c["passed"] for c in ok["checks"])

    drop = decide(_cmp(topic=0.02, stance=-0.006, ner=0.0), base_tasks=["topic", "stance", "ner"])
    assert not drop["passed"]
    assert drop["reasons"][0].startswith("stance macro_f1 0.8000 -> 0.7940 (-0.60 points")
    assert "FAIL" in drop["reasons"][0]

    new_worse = decide(_cmp(topic=-0.001), base_tasks=["topic"], new_data_tasks=["topic"])
    assert not new_worse["passed"] and "received new rows" in new_worse["reasons"][0]
    loose = decide(_cmp(topic=-0.03), base_tasks=["topic"], policy=GatePolicy(tolerance=0.05))
    assert loose["passed"]
    assert "GATE PASSED" in format_verdict(loose)


def test_gate_refuses_what_it_cannot_check():
    v = decide(_cmp(topic=0.1), base_tasks=["topic", "ner"])
    assert not v["passed"]
    assert "ner: no held-out file" in v["reasons"][0] and "--heldout ner:FILE" in v["reasons"][0]
    assert "GATE REFUSED" in format_verdict(v)
    assert not decide(_cmp(), base_tasks=[])["passed"], "an empty comparison never passes"
    with pytest.raises(ValueError):
        GatePolicy(tolerance=-0.1)


# ---------------------------------------------------------------------------- stored models


def _store_untrained(backbone: Path, tasks: dict[str, list[str]], training: dict | None = None) -> str:
    """A model with fresh heads saved to the store (no training: a second)."""
    from khabar.models.backbones import backbone_identity, load_encoder, load_tokenizer
    from khabar.models.multitask import KhabarModel
    from khabar.models.schema import ModelSchema
    from khabar.models.store import save_model

    schema = ModelSchema(tasks=tasks, max_length=32, stride=8, backbone=backbone_identity(str(backbone), str(backbone)))
    model = KhabarModel(load_encoder(str(backbone)), schema)
    return save_model(model, load_tokenizer(str(backbone)), training=training or {})


def test_starting_from_a_stored_model_keeps_rows_by_label(tiny_backbone, tmp_path):
    import torch

    from khabar.models.backbones import build_tiny_backbone, load_encoder
    from khabar.models.multitask import KhabarModel
    from khabar.models.schema import ModelSchema
    from khabar.models.store import ModelStoreError, load_model
    from khabar.training.warmstart import init_from_stored

    tag = _store_untrained(tiny_backbone, {"topic": ["economy", "sport"], "ner": ["O", "B-LOC", "I-LOC"]})
    stored = load_model(tag).model
    torch.manual_seed(123)  # fresh weights that differ from the stored ones
    schema = ModelSchema(tasks={"topic": ["sport", "culture", "economy"], "ner": ["O", "B-LOC", "I-LOC"],
                                "stance": ["favor", "against", "neutral", "unrelated"]}, max_length=32, stride=8)
    model = KhabarModel(load_encoder(str(tiny_backbone)), schema)
    fresh_culture = model.heads["topic"].weight[1].detach().clone()
    message = init_from_stored(model, tag)
    assert "topic 2/3 labels" in message and "stance new head" in message
    w, old = model.heads["topic"].weight, stored.heads["topic"].weight
    assert torch.equal(w[0], old[1]) and torch.equal(w[2], old[0]), "rows follow label names, not positions"
    assert torch.equal(w[1], fresh_culture), "a new label keeps its fresh row"
    assert torch.equal(model.heads["ner"].bias, stored.heads["ner"].bias)
    for (name, a), (_, b) in zip(model.encoder.named_parameters(), stored.encoder.named_parameters()):
        assert torch.equal(a, b), name

    other = build_tiny_backbone(tmp_path / "wide", Path(__file__).parent / "fixtures" / "tiny_vocab.txt", hidden=32)
    wide = KhabarModel(load_encoder(str(other)), ModelSchema(tasks={"topic": ["sport"]}, max_length=32, stride=8))
    with pytest.raises(ModelStoreError, match="--from backbone"):
        init_from_stored(wide, tag)


@pytest.fixture()
def toy_base(tiny_backbone, tmp_path):
    """An (untrained) stored base model whose recorded config trains on toy files, dev on others."""
    from khabar.training.config import from_dict
    from khabar.training.readers import read_any

    (tmp_path / "train").mkdir()
    (tmp_path / "dev").mkdir()
    train_files = toy_files(tmp_path / "train", n=12)
    dev_files = toy_files(tmp_path / "dev", n=8, seed=5)
    raw = toy_config(tiny_backbone, train_files, epochs=1)
    for t in raw["tasks"]:
        raw["tasks"][t]["dev"] = str(dev_files[t])
    cfg = from_dict(raw)
    data = {t: {"train": [{"sha256": read_any(t, p).sha256}]} for t, p in train_files.items()}
    tasks = {"topic": ["economy", "sport"], "stance": ["favor", "against", "neutral", "unrelated"],
             "ner": ["O", "B-PERS", "I-PERS", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]}
    tag = _store_untrained(tiny_backbone, tasks, {"config": cfg.to_dict(), "data": data})
    return {"tag": tag, "train": train_files, "dev": dev_files, "dir": tmp_path}


def test_prepare_writes_the_merged_set_and_a_resumable_config(toy_base):
    from khabar.training.readers import read_any
    from khabar.retrain import RetrainOptions, prepare

    d = toy_base["dir"]
    base_topic = [json.loads(line) for line in toy_base["train"]["topic"].read_text(encoding="utf-8").splitlines()]
    dev_topic = [json.loads(line) for line in toy_base["dev"]["topic"].read_text(encoding="utf-8").splitlines()]
    flipped = {"sport": "economy", "economy": "sport"}
    new = _jsonl(d / "new_topic.jsonl", [
        {"id": "x1", "text": base_topic[0]["text"], "label": flipped[base_topic[0]["label"]]},  # conflict
        {"id": "x2", "text": base_topic[1]["text"], "label": base_topic[1]["label"]},  # duplicate
        {"id": "x3", "text": dev_topic[0]["text"], "label": dev_topic[0]["label"]},  # held-out text
        {"id": "x4", "text": "أطلقت الشركة هاتفا جديدا", "label": "technology"},  # a new label
    ])
    log: list[str] = []
    opts = RetrainOptions(base=toy_base["tag"], new=[str(new)], overrides=["epochs=2"])
    prep = prepare(opts, log=log.append)
    topic = prep.merges["topic"]
    assert (len(topic.conflicts), topic.duplicates["same_text"], topic.heldout_dropped) == (1, 1, 1)
    assert topic.new_labels == ["technology"]
    assert prep.new_data_tasks == ["topic"]
    cfg = prep.cfg
    assert cfg.init_from == toy_base["tag"] and cfg.epochs == 2 and cfg.name == "toy-retrain"
    assert cfg.tasks["topic"].labels == ["economy", "sport", "technology"], "base order kept, new label appended"
    merged = read_any("topic", cfg.tasks["topic"].train[0].path).examples
    assert Path(cfg.tasks["topic"].train[0].path).parent == prep.folder
    assert {e.id for e in merged} >= {"x1", "x2", "x4"} and "x3" not in {e.id for e in merged}
    assert next(e for e in merged if e.id == "x1").label == flipped[base_topic[0]["label"]]
    assert cfg.tasks["stance"].dev[0].path == str(toy_base["dev"]["stance"]), "the base's dev sets are kept"
    assert {s.key for s in prep.sets} == {"topic/topic", "stance/stance", "ner/ner"}
    report = json.loads((prep.folder / "merge.json").read_text(encoding="utf-8"))
    assert report["tasks"]["topic"]["conflicts"][0]["new"]["id"] == "x1"

    again = prepare(opts, log=lambda m: None)
    assert (again.folder, again.cfg.fingerprint()) == (prep.folder, cfg.fingerprint()), \
        "the same command must find the same run (resume after a crash)"
    scratch = prepare(RetrainOptions(base=toy_base["tag"], new=[str(new)], start_from="backbone"), log=lambda m: None)
    assert scratch.cfg.init_from is None and scratch.folder == prep.folder

    # The base's training file changed since: merged as it is now, with a warning.
    toy_base["train"]["ner"].write_text(toy_base["train"]["ner"].read_text(encoding="utf-8") + "\nقال O\n",
                                        encoding="utf-8")
    log.clear()
    prepare(opts, log=log.append)
    assert any("changed since the base model was trained" in m for m in log)


def test_prepare_rejects_bad_input_before_training(toy_base, tmp_path):
    from khabar.training.config import ConfigError
    from khabar.training.readers import DataError
    from khabar.retrain import RetrainOptions, prepare

    with pytest.raises(MergeError, match="does not exist"):
        prepare(RetrainOptions(base=toy_base["tag"], new=[str(tmp_path / "nope.jsonl")]))
    bad_stance = _jsonl(tmp_path / "st.jsonl", [{"target": "t", "text": "x", "label": "maybe"}])
    with pytest.raises(DataError, match="maybe"):
        prepare(RetrainOptions(base=toy_base["tag"], new=[str(bad_stance)]))
    with pytest.raises(ConfigError, match="--from"):
        prepare(RetrainOptions(base=toy_base["tag"], new=[str(bad_stance)], start_from="scratch"))


def test_gate_verdicts_are_kept_in_the_stages_file(toy_base, tiny_backbone):
    from khabar.models.registry import list_models, promote, read_stages, record_gate

    first = promote(toy_base["tag"])
    refused = _store_untrained(tiny_backbone, {"topic": ["economy", "sport"]})
    record_gate(refused, {"passed": False, "base": first, "reasons": ["topic dropped"]}, report="/r")
    stages = read_stages()
    assert stages["gates"][refused]["passed"] is False and stages["promoted"] == first
    assert {r["tag"]: r["stage"] for r in list_models()}[refused] == "refused"
    assert refused not in [h["tag"] for h in stages["history"]], "rollback must never land on a refused model"


def test_cli_errors_are_one_line(toy_base, tmp_path):
    env = {**os.environ, "KHABAR_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "khabar.cli", "retrain", "--base", "khabar:nosuch", "--new",
                          str(toy_base["train"]["topic"])], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: no model") and "Traceback" not in out.stderr
    odd = _jsonl(tmp_path / "odd.jsonl", [{"headline": "x"}])
    out = subprocess.run([sys.executable, "-m", "khabar.cli", "retrain", "--base", toy_base["tag"], "--new", str(odd)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "topic:" in out.stderr and "Traceback" not in out.stderr
