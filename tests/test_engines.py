"""Inference engines: int8 paths give fp32's labels, the ONNX graph is the model, the int8 graph is
stored with the model and run only for the weights it came from, int8 ONNX is the default engine
of the service and batch jobs, and engines are chosen by name."""
from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from khabar.models.engines import (DEFAULT_INT8, EngineError, OnnxEngine, TorchInt8Engine, make_engine,
                                   resolve_engine_name)
from khabar.models.files import sha256_file
from khabar.models.onnx_export import GRAPH_DIR, INT8_GRAPH, MANIFEST, export_onnx
from khabar.models.predictor import Article, Predictor, TorchEngine
from khabar.models.windows import collate, make_windows
from khabar.settings import settings

ROOT = Path(__file__).resolve().parents[1]
TARGET = "الحكومة تعلن خطة جديدة لدعم الاقتصاد"


@pytest.fixture(scope="module")
def articles() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows[:40]]


@pytest.fixture
def knobs(monkeypatch):
    """Set (a string) or unset (None) ``KHABAR_*`` variables for one test. Settings are read once
    per process, so they are read again after each change, and once more when the test ends
    (tests/conftest.py pins KHABAR_ENGINE=fp32 for the other tests)."""
    def set_knobs(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        settings.cache_clear()

    yield set_knobs
    monkeypatch.undo()
    settings.cache_clear()


@pytest.fixture(scope="module")
def onnx_engine(tiny_loaded):
    return make_engine("onnx-int8", tiny_loaded, threads=1)


def test_names_resolve_and_unknown_names_are_refused(knobs):
    knobs(KHABAR_ENGINE=None)
    assert resolve_engine_name(None) == DEFAULT_INT8 == "onnx-int8", "the onnx extra is installed here"
    knobs(KHABAR_ENGINE="fp32")
    assert resolve_engine_name(None) == "fp32"
    knobs(KHABAR_ENGINE=" Torch-INT8 ")
    assert resolve_engine_name(None) == resolve_engine_name("") == "torch-int8"
    assert resolve_engine_name("fp32") == "fp32", "an engine named by the caller wins over KHABAR_ENGINE"
    knobs(KHABAR_ENGINE=None)
    assert resolve_engine_name("INT8") == DEFAULT_INT8
    assert resolve_engine_name("torch-int8") == "torch-int8"
    with pytest.raises(EngineError, match="choose one of"):
        resolve_engine_name("int4")
    knobs(KHABAR_ENGINE="int4")
    with pytest.raises(EngineError, match="unknown engine 'int4': choose one of"):
        resolve_engine_name(None)


def test_without_onnxruntime_the_default_is_fp32_said_once(monkeypatch, knobs, caplog):
    import khabar.models.engines as engines

    knobs(KHABAR_ENGINE=None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python reports for a missing package
    engines._say_fp32_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="khabar.engines"):
        assert resolve_engine_name(None) == resolve_engine_name(None) == "fp32"
    lines = [r.getMessage() for r in caplog.records if r.name == "khabar.engines"]
    assert len(lines) == 1 and "onnxruntime" in lines[0] and "khabar[onnx]" in lines[0], lines
    assert resolve_engine_name("int8") == "onnx-int8", "a named engine is not replaced"
    engines._say_fp32_fallback.cache_clear()


def test_engines_by_name(tiny_loaded, onnx_engine):
    assert isinstance(make_engine("fp32", tiny_loaded), TorchEngine)
    assert isinstance(make_engine("torch-int8", tiny_loaded), TorchInt8Engine)
    assert isinstance(onnx_engine, OnnxEngine)
    # the model the others share is left as it was (fp32 Linear layers)
    assert all(type(m) is torch.nn.Linear for m in tiny_loaded.model.modules() if "Linear" in type(m).__name__)


def test_training_saves_the_int8_graph_with_the_model(tiny_loaded):
    """The tiny model was saved by `train`: its store entry holds the graph of its weights, and the
    engine runs that graph instead of exporting one."""
    entry = Path(tiny_loaded.path)
    folder = entry / GRAPH_DIR
    assert {p.name for p in folder.iterdir()} == {INT8_GRAPH, MANIFEST}  # no fp32 graph, no temp files
    assert not [p.name for p in entry.iterdir() if p.name.startswith(GRAPH_DIR) and p.name != GRAPH_DIR]
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["weights_sha256"] == sha256_file(entry / "model.safetensors")
    assert manifest["graph_sha256"] == sha256_file(folder / INT8_GRAPH)
    stamp = (folder / INT8_GRAPH).stat().st_mtime_ns
    engine = make_engine("int8", tiny_loaded, threads=1)
    assert engine.path == folder / INT8_GRAPH
    assert (folder / INT8_GRAPH).stat().st_mtime_ns == stamp  # reused, not exported again


def test_a_stale_or_tampered_graph_is_exported_again(tiny_loaded, articles):
    """A graph from other weights (a copied entry, weights replaced) or edited since its export is
    never run: the engine exports the graph of the weights it loaded."""
    from khabar.models.store import has_current_graph, load_model, model_path, save_model

    other = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        next(other.heads.parameters()).add_(0.5)
    tag = save_model(other, tiny_loaded.tokenizer, training=tiny_loaded.training, name="khabar-stale-graph")
    _, entry = model_path(tag)
    folder = entry / GRAPH_DIR
    own = sha256_file(folder / INT8_GRAPH)
    # 1. the graph of the tiny model's weights put in its place
    for name in (INT8_GRAPH, MANIFEST):
        (folder / name).write_bytes((Path(tiny_loaded.path) / GRAPH_DIR / name).read_bytes())
    assert not has_current_graph(entry)
    loaded = load_model(tag)
    make_engine("onnx-int8", loaded, threads=1)
    assert has_current_graph(entry) and sha256_file(folder / INT8_GRAPH) == own
    # 2. the graph's bytes changed after its export
    with open(folder / INT8_GRAPH, "ab") as fh:
        fh.write(b"\0")
    assert not has_current_graph(entry)
    engine = make_engine("onnx-int8", loaded, threads=1)
    assert has_current_graph(entry) and sha256_file(engine.path) == own
    batch = _batches(loaded, articles[:8])[0]
    got, want = engine(batch, ("topic",))["topic"], TorchEngine(loaded.model)(batch, ("topic",))["topic"]
    np.testing.assert_allclose(got, want, atol=0.02)  # int8 of these weights (0.0006 measured)


def _batches(tiny_loaded, texts):
    windows = make_windows(tiny_loaded.tokenizer, texts, max_length=tiny_loaded.schema.max_length,
                           stride=tiny_loaded.schema.stride)
    return [collate(windows[i: i + n], tiny_loaded.tokenizer.pad_token_id) for i, n in ((0, 3), (3, 5))]


def test_exported_graph_computes_the_model_with_dynamic_batch_and_length(tiny_loaded, onnx_engine, articles,
                                                                        tmp_path):
    export_onnx(tiny_loaded.model, tmp_path / "graph", tokenizer=tiny_loaded.tokenizer, keep_fp32=True)
    fp32_graph = OnnxEngine(tmp_path / "graph" / "model.onnx", onnx_engine.tasks, threads=1)
    torch_engine = TorchEngine(tiny_loaded.model)
    for batch in _batches(tiny_loaded, [articles[0][:60], articles[1], articles[2][:200], articles[3]]):
        ref = torch_engine(batch, ("topic", "ner"))
        got = fp32_graph(batch, ("topic", "ner"))
        assert set(got) == {"topic", "ner"}
        for task in ref:
            assert got[task].shape == ref[task].shape
            np.testing.assert_allclose(got[task], ref[task], atol=1e-4)


@pytest.mark.parametrize("name", ["onnx-int8", "torch-int8"])
def test_int8_labels_agree_with_fp32(tiny_loaded, onnx_engine, articles, name):
    fp32 = Predictor.from_loaded(tiny_loaded)
    engine = onnx_engine if name == "onnx-int8" else make_engine(name, tiny_loaded)
    int8 = Predictor.from_loaded(tiny_loaded, engine=engine)
    reqs = [Article(t, [TARGET]) for t in articles]
    ref, got = fp32.label(reqs), int8.label(reqs)
    for a, b in zip(ref, got):
        for task in ("topic", "stance"):
            pa = a[task] if task == "topic" else a[task][0]
            pb = b[task] if task == "topic" else b[task][0]
            assert pb["scores"] == pytest.approx(pa["scores"], abs=0.02)
            margin = sorted(pa["scores"].values())[-1] - sorted(pa["scores"].values())[-2]
            if margin > 0.02:  # a near-tie may flip; anything clearer may not
                assert pb["label"] == pa["label"]
    # token level: the NER argmax of nearly every token is the same
    torch_engine = TorchEngine(tiny_loaded.model)
    same = total = 0
    for batch in _batches(tiny_loaded, articles[:8]):
        r = torch_engine(batch, ("ner",))["ner"].argmax(-1)
        g = engine(batch, ("ner",))["ner"].argmax(-1)
        mask = batch["attention_mask"].numpy().astype(bool)
        same += int((r == g)[mask].sum())
        total += int(mask.sum())
    assert same / total >= 0.97


def test_onnx_streams_give_the_same_labels_in_order(tiny_loaded, onnx_engine, articles):
    two = OnnxEngine(onnx_engine.path, onnx_engine.tasks, threads=2, streams=2)
    assert two.streams == 2 and OnnxEngine(onnx_engine.path, onnx_engine.tasks, threads=1, streams=4).streams == 1
    batches = _batches(tiny_loaded, articles[:8]) * 3
    one_by_one = [onnx_engine(b, ("topic", "ner")) for b in batches]
    mapped = list(two.map(iter(batches), ("topic", "ner")))
    assert len(mapped) == len(batches)
    for ref, got in zip(one_by_one, mapped):
        for task in ref:
            np.testing.assert_allclose(got[task], ref[task], atol=1e-5)
    seq = Predictor(None, tiny_loaded.tokenizer, tiny_loaded.schema, engine=onnx_engine, batch_size=2)
    par = Predictor(None, tiny_loaded.tokenizer, tiny_loaded.schema, engine=two, batch_size=2)
    reqs = [Article(t, [TARGET]) for t in articles]
    for a, b in zip(seq.label(reqs), par.label(reqs)):
        assert b["topic"]["label"] == a["topic"]["label"] and b["stance"][0]["label"] == a["stance"][0]["label"]
        assert [(e["start"], e["end"], e["label"]) for e in b["entities"]] == \
            [(e["start"], e["end"], e["label"]) for e in a["entities"]]


def test_onnx_streams_setting_is_checked(knobs):
    from khabar.models.engines import engine_streams

    knobs(KHABAR_ONNX_STREAMS=None)
    assert engine_streams() == 1
    knobs(KHABAR_ONNX_STREAMS="2")
    assert engine_streams() == 2 and engine_streams(3) == 3
    with pytest.raises(EngineError, match="at least 1"):
        engine_streams(0)
    knobs(KHABAR_ONNX_STREAMS="two")
    with pytest.raises(ValueError, match="KHABAR_ONNX_STREAMS='two' is not a whole number"):
        engine_streams()


def test_onnx_spinning_follows_the_setting_and_keeps_outputs(knobs, onnx_engine, tiny_loaded, articles):
    from khabar.models.engines import engine_spin

    def session_spins(engine: OnnxEngine) -> str:
        return engine.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    knobs(KHABAR_ONNX_SPIN=None)
    assert engine_spin() is True and engine_spin(False) is False
    knobs(KHABAR_ONNX_SPIN="0")
    quiet = OnnxEngine(onnx_engine.path, onnx_engine.tasks, threads=2)
    assert quiet.spin is False and session_spins(quiet) == "0"
    busy = OnnxEngine(onnx_engine.path, onnx_engine.tasks, threads=2, spin=True)
    assert busy.spin is True and session_spins(busy) == "1"
    batch = _batches(tiny_loaded, articles[:8])[0]
    a, b = quiet(batch, ("topic", "ner")), busy(batch, ("topic", "ner"))
    for task in a:
        np.testing.assert_allclose(a[task], b[task], atol=1e-5)
    knobs(KHABAR_ONNX_SPIN="sometimes")
    with pytest.raises(ValueError, match="KHABAR_ONNX_SPIN must be 1 or 0, got 'sometimes'"):
        engine_spin()


def test_onnx_engine_refuses_a_head_the_model_lacks(onnx_engine, tiny_loaded, articles):
    batch = _batches(tiny_loaded, articles[:8])[0]
    with pytest.raises(KeyError, match="no"):
        onnx_engine(batch, ("sentiment",))


def test_concurrent_first_use_exports_once(tiny_loaded, tmp_path, monkeypatch):
    """Service workers starting together: one exports, the other waits and reuses the files."""
    from concurrent.futures import ThreadPoolExecutor

    import khabar.models.onnx_export as onnx_export

    calls = []
    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    folder = tmp_path / "onnx"
    with ThreadPoolExecutor(2) as pool:
        engines = list(pool.map(lambda _: OnnxEngine.for_model(tiny_loaded, threads=1, graph_dir=folder), range(2)))
    assert engines[0].path == engines[1].path == folder / "model.int8.onnx"
    assert len(calls) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("onnx.") and p.is_dir()]  # no temp folders left


def test_service_and_batch_jobs_run_int8_onnx_by_default_and_fp32_on_request(tiny_model_tag, knobs):
    from khabar.serving.batch.scorer import Scorer
    from khabar.serving.reload import ModelHolder

    knobs(KHABAR_ENGINE=None)  # tests/conftest.py pins fp32 for the others
    assert isinstance(ModelHolder(tiny_model_tag).live.predictor.engine, OnnxEngine)
    assert isinstance(Scorer(tiny_model_tag, tasks=["topic"], targets=[]).predictor.engine, OnnxEngine)
    knobs(KHABAR_ENGINE="fp32")
    assert type(ModelHolder(tiny_model_tag).live.predictor.engine) is TorchEngine
    assert type(Scorer(tiny_model_tag, tasks=["topic"], targets=[]).predictor.engine) is TorchEngine


def test_batch_jobs_follow_khabar_engine_and_keep_int8_jobs_apart(tiny_model_tag, tmp_path, knobs):
    """KHABAR_ENGINE picks the engine of batch jobs (as of the service); int8 output is another job."""
    from khabar.models.engines import TorchInt8Engine
    from khabar.serving.batch import JobError, ScoreOptions, run_job
    from khabar.serving.batch.scorer import Scorer

    knobs(KHABAR_ENGINE="torch-int8")
    assert isinstance(Scorer(tiny_model_tag, tasks=["topic"], targets=[]).predictor.engine, TorchInt8Engine)

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"id": 1, "text": "فاز الفريق الوطني بالمباراة"}\n', encoding="utf-8")
    knobs(KHABAR_ENGINE="fp32")
    run_job(ScoreOptions(inp, out, model=tiny_model_tag, part_size=1, progress=False))
    knobs(KHABAR_ENGINE="torch-int8")
    with pytest.raises(JobError, match="already exists"):
        run_job(ScoreOptions(inp, out, model=tiny_model_tag, part_size=1, progress=False))
