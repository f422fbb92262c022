"""The bench (benchmarks/bench.py, run from the checkout) on the tiny model: every row runs, the
report has the agreed keys, and the training row leaves the user's model store alone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import SAMPLE_DIR as SAMPLE
from benchmarks.bench import BenchError, BenchOptions, agreement, load_articles, make_row, run_bench
from benchmarks.bench_report import markdown


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The shared data layout, filled with the project's own sample (never ../shared/data)."""
    root = tmp_path_factory.mktemp("bench_data")
    for src, dst in [("topic.jsonl", "topic/ant21/dev.jsonl"), ("ner.conll", "ner/anercorp/train.conll"),
                     ("ner.conll", "ner/anercorp/dev.conll"), ("stance.jsonl", "stance/ans/dev.jsonl")]:
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / src, root / dst)
    return root


def test_articles_are_a_fixed_sample_of_whole_articles(data_dir):
    a = load_articles(data_dir, 10, seed=0)
    assert [x["id"] for x in a] == [x["id"] for x in load_articles(data_dir, 10, seed=0)]
    first = json.loads((data_dir / "topic/ant21/dev.jsonl").read_text(encoding="utf-8").splitlines()[0])
    whole = {x["id"]: x["text"] for x in load_articles(data_dir, 120, seed=0)}
    assert whole[first["id"]] == f"{first['title']}\n{first['text']}"
    with pytest.raises(BenchError, match="--data-dir"):
        load_articles(data_dir / "nowhere", 5)
    with pytest.raises(BenchError, match="--n"):
        load_articles(data_dir, 100_000)


def test_agreement_and_rows():
    ref = [{"topic": "sport", "stance": "neutral", "entities": [[0, 4, "LOC"], [9, 12, "PERS"]]},
           {"topic": "economy", "stance": "favor", "entities": []}]
    got = [{"topic": "sport", "stance": "against", "entities": [[0, 4, "LOC"]]},
           {"topic": "culture", "stance": "favor", "entities": []}]
    assert agreement(got, ref) == {"topic": 0.5, "stance": 0.5, "entities_f1": pytest.approx(2 / 3)}
    assert agreement(ref, ref)["entities_f1"] == 1.0
    row = make_row("fp32", "x", {"seconds": 2.0, "latencies_ms": [10, 20, 30], "labels": got},
                   2, [{"label": "sport"}, {"label": "economy"}], ref, base_rate=0.5)
    assert row["articles_per_s"] == 1.0 and row["ratio"] == 2.0 and row["p50_ms"] == 20
    assert row["topic_accuracy"] == 0.5
    assert make_row("service", "y", {"skipped": "no"}, 2, [], ref, 1.0)["status"] == "skipped: no"


def test_report_says_which_rows_were_skipped(tmp_path):
    from benchmarks.bench import _report

    rows = [make_row("baseline", "baseline", {"seconds": 1.0, "labels": [{}]}, 2, [{"label": None}], None, None)]
    rows += [make_row(k, k, {"skipped": "--skip"}, 2, [], None, 2.0) for k in ("onnx-int8", "service", "batch")]
    skipped = {"status": "skipped: --skip"}
    report = _report(BenchOptions(data_dir=tmp_path), "khabar:x", {"backbone": {"name": "tiny"}}, [{}], 1, "now", rows,
                     skipped, skipped, "onnx-int8")
    md = markdown(report)
    for line in ("- int8 predictor (onnx-int8): skipped (--skip)", "- service: skipped (--skip)",
                 "- batch job: skipped (--skip)", "- training: skipped (--skip)"):
        assert f"\n{line}\n" in md, md
    assert "None" not in md


@pytest.mark.slow
def test_bench_runs_every_row_on_the_tiny_model(tiny_model_tag, data_dir, tmp_path):
    import bentoml

    before = sorted(str(m.tag) for m in bentoml.models.list("khabar"))
    report = run_bench(BenchOptions(data_dir=data_dir, model=tiny_model_tag, n=6, threads=1, clients=3,
                                    train_steps=3, train_batch=4, dev_limit=12, out_dir=tmp_path),
                       log=lambda m: None)
    rows = {r["key"]: r for r in report["rows"]}
    assert set(rows) == {"baseline", "fp32", "onnx-int8", "torch-int8", "onnx-int8-streams", "service", "batch"}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["status"])
        assert row["articles_per_s"] > 0 and row["peak_rss_mb"] > 50
    for key in ("fp32", "onnx-int8", "torch-int8", "onnx-int8-streams"):
        assert rows[key]["agreement"]["topic"] >= 0.5  # same weights; only long articles may differ
    assert rows["baseline"]["ratio"] == 1.0 and rows["service"]["p95_ms"] >= rows["service"]["p50_ms"]
    saved = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    for key in ("predictor_int8", "service", "training"):
        assert isinstance(saved["ratios"][key], float)
    assert isinstance(saved["peak_rss_mb"]["service"], float)
    assert saved["training"]["khabar"]["examples_per_s"] > 0 and saved["training"]["trainer"]["examples_per_s"] > 0
    assert {s["task"] for s in saved["int8_vs_fp32_dev"]["sets"]} == {"stance", "ner"}
    assert "× baseline" in (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert markdown(saved).count("\n| ") >= 6
    # the training row trains in a scratch home: nothing new in the user's store
    assert sorted(str(m.tag) for m in bentoml.models.list("khabar")) == before


def test_bench_cli_refuses_unknown_rows(data_dir):
    from typer.testing import CliRunner

    from benchmarks.bench import app

    res = CliRunner().invoke(app, ["--data-dir", str(data_dir), "--skip", "gpu"])
    assert res.exit_code == 2 and "unknown --skip" in res.output


def test_bench_runs_as_a_module_from_any_folder(tmp_path):
    """`make bench` runs `python -m benchmarks.bench` from the checkout; its child rows run
    `-m benchmarks.bench_rows`, which must import wherever the bench was started."""
    import subprocess
    import sys

    from benchmarks import REPO_ROOT
    from benchmarks.bench import child_env

    out = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--data-dir" in out.stdout, out.stderr
    probe = subprocess.run([sys.executable, "-c", "import benchmarks.bench_rows"], cwd=tmp_path, env=child_env(),
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
