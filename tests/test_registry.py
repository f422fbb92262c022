"""Promotion is one atomic step in the store; rollback returns to the previous promoted model; a
model about to be served gets its int8 graph when it lacks one."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from khabar.models.registry import list_models, promote, promoted_tag, read_stages, rollback, serving_tag
from khabar.models.store import ModelStoreError


def _copy_model(tag: str, skip: tuple[str, ...] = ()) -> str:
    """A second stored model with the same files (a stand-in for a retrained candidate), without
    the files or folders named in ``skip``."""
    import shutil

    import bentoml
    from khabar.models.store import model_path

    _, src = model_path(tag)
    with bentoml.models.create("khabar", metadata={"tasks": ["topic"]}) as ref:
        for item in src.iterdir():
            if item.name in {"model.yaml", *skip}:
                continue
            dst = Path(ref.path) / item.name
            shutil.copytree(item, dst) if item.is_dir() else shutil.copy2(item, dst)
        return str(ref.tag)


def test_promote_and_rollback(tiny_model_tag):
    first = promote(tiny_model_tag)
    assert promoted_tag() == first == serving_tag()
    second = promote(_copy_model(tiny_model_tag), reason="gate passed")
    assert promoted_tag() == second != first
    assert serving_tag(first) == first, "an explicit tag wins over the promoted one"
    assert rollback() == first
    assert promoted_tag() == first
    stages = read_stages()
    assert [h["reason"] for h in stages["history"]][-2:] == ["gate passed", f"rollback from {second}"]
    rows = {r["tag"]: r for r in list_models()}
    assert rows[first]["stage"] == "promoted" and rows[second]["stage"] == "retired"


def test_a_model_promoted_or_rolled_back_to_without_a_graph_gets_one(tiny_model_tag):
    """A model stored before graphs were saved with it (here: a copy without ``onnx/``) is given
    its graph when promoted, and again when a rollback returns to it, so the service need not
    export it."""
    import shutil

    from khabar.models.onnx_export import GRAPH_DIR
    from khabar.models.store import has_current_graph, model_path

    bare = _copy_model(tiny_model_tag, skip=(GRAPH_DIR,))
    entry = model_path(bare)[1]
    assert not (entry / GRAPH_DIR).exists()
    assert promote(bare, reason="test: no graph yet") == promoted_tag()
    assert has_current_graph(entry)
    shutil.rmtree(entry / GRAPH_DIR)
    promote(tiny_model_tag, reason="test: another model")
    assert rollback() == bare and has_current_graph(entry)


def test_promote_command_shows_the_graph_export_and_its_time(tiny_model_tag):
    """`khabar models promote` of a model without a graph says it exports one, step by step, and
    how long it took; a model that has one is promoted without a word about it."""
    import logging

    from typer.testing import CliRunner

    from khabar.cli import app
    from khabar.models.onnx_export import GRAPH_DIR

    bare = _copy_model(tiny_model_tag, skip=(GRAPH_DIR,))
    res = CliRunner().invoke(app, ["models", "promote", bare])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"promoted {bare}"
    steps = res.stderr.splitlines()
    assert steps[0] == f"{bare} has no int8 ONNX graph of its weights: exporting it now (once per model)"
    assert any(line.startswith("  quantizing to int8") for line in steps), steps
    assert re.fullmatch(r"  int8 graph written in \d+ s", steps[-1]), steps
    again = CliRunner().invoke(app, ["models", "promote", bare])
    assert again.exit_code == 0 and again.stderr == "", again.stderr
    logger = logging.getLogger("khabar")
    assert not logger.handlers and logger.propagate, "the command leaves logging as it found it"


def test_a_model_whose_graph_cannot_be_exported_is_still_promoted(tiny_model_tag, caplog):
    """Promotion is the operator's call: damaged weights make the export fail with a warning, the
    stages file records the promotion, and the serving reload is where the model is refused."""
    from khabar.models.onnx_export import GRAPH_DIR
    from khabar.models.store import WEIGHTS, model_path

    broken = _copy_model(tiny_model_tag, skip=(GRAPH_DIR,))
    (model_path(broken)[1] / WEIGHTS).write_bytes(b"\xff" * 64)
    with caplog.at_level("WARNING"):
        assert promote(broken, reason="test: damaged weights") == promoted_tag()
    assert "int8 graph not exported" in caplog.text
    assert not (model_path(broken)[1] / GRAPH_DIR).exists()


def test_promote_refuses_unknown_models():
    with pytest.raises(ModelStoreError, match="no model"):
        promote("khabar:nosuchversion")


def test_cli_lists_every_subcommand_with_a_sentence():
    out = subprocess.run([sys.executable, "-m", "khabar.cli", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert out.returncode == 0, out.stderr
    for cmd in ("train", "eval", "serve", "score", "backbone", "models"):
        line = next((l for l in out.stdout.splitlines() if l.strip().startswith(("│ " + cmd, cmd))), None)
        assert line is not None, f"`khabar --help` does not list {cmd}:\n{out.stdout}"
        assert len(line.split()) > 3, f"{cmd} has no description"


def test_models_cli_reports_errors_in_one_line():
    out = subprocess.run([sys.executable, "-m", "khabar.cli", "models", "promote", "khabar:nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("error: no model") and "Traceback" not in out.stderr


def test_commands_use_the_promoted_model_not_the_newest(tiny_model_tag, tmp_path):
    """Promote model A, store a newer model B (a refused candidate, say): score and eval without
    --model use A (the bench resolves its model through the same serving_tag)."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from khabar.cli import app

    before = promoted_tag()
    a = promote(tiny_model_tag, reason="test: A is live")
    b = _copy_model(tiny_model_tag)
    from khabar.models.store import model_path

    assert model_path("khabar:latest")[0] == b != a
    assert serving_tag() == a   # what benchmarks/bench.py and `khabar serve` resolve with no --model
    articles = tmp_path / "in.jsonl"
    articles.write_text(json.dumps({"id": "1", "text": "فاز المنتخب المغربي على نظيره في الرباط"},
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    res = CliRunner().invoke(app, ["score", str(articles), "-o", str(out), "--tasks", "topic", "-q"])
    assert res.exit_code == 0, res.output
    versions = {m["version"] for m in pq.read_table(out).column("model").to_pylist()}
    assert versions == {a.partition(":")[2]}

    topic = tmp_path / "topic.jsonl"
    topic.write_text(json.dumps({"id": "1", "title": "", "text": "فاز المنتخب", "label": "sport"},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "--topic", str(topic), "--out", str(tmp_path / "ev"), "--bootstrap", "10"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["model"]["tag"] == a
    # eval measures the model as trained, whatever the service's default engine, and says so
    assert metrics["settings"]["engine"] == "fp32" and "Engine: fp32." in (tmp_path / "ev" / "report.md").read_text()
    if before is not None:   # run alone (-k), nothing was promoted before: A stays
        rollback()
