"""Kill a real `khabar score` process with SIGKILL mid-job, rerun it: exactly one row per valid id."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from khabar.serving.batch import ScoreOptions, errors_path, read_output, run_job

ROOT = Path(__file__).resolve().parents[1]
TARGET = "الاتفاق"
N = 160


def sample_texts(n: int) -> list[str]:
    lines = (ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    return [texts[i % len(texts)] for i in range(n)]


def assert_same(got, want, path="row"):
    """Equal structure and labels; floats equal up to noise."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6), path
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


def make_input(path: Path) -> tuple[list[str], list[str]]:
    """N rows, every 25th without text and one duplicate id; returns (valid ids, error ids)."""
    valid, bad, lines = [], [], []
    for i, text in enumerate(sample_texts(N)):
        row = {"id": f"r{i}", "text": text}
        if i % 25 == 7:
            row.pop("text")
            bad.append(row["id"])
        elif i == 99:
            row["id"] = "r3"
            bad.append("r3")
        else:
            valid.append(row["id"])
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return valid, bad


def done_parts(parts_dir: Path) -> int:
    if not parts_dir.exists():
        return 0
    return sum(1 for p in parts_dir.glob("part-*.jsonl") if not p.name.endswith(".errors.jsonl"))


def test_sigkill_then_rerun_finishes_exactly_once_with_the_clean_labels(tiny_model_tag, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    valid, bad = make_input(inp)
    parts_dir = out.with_name(out.name + ".parts")
    cmd = [sys.executable, "-m", "khabar.cli", "score", str(inp), "--output", str(out), "--model", tiny_model_tag,
           "--targets", TARGET, "--part-size", "8", "--batch-size", "4", "--quiet"]
    env = {**os.environ, "KHABAR_THREADS": "1"}  # KHABAR_HOME etc. of this test session are inherited
    log = tmp_path / "stderr.log"

    # Two runs killed at different moments (each right after some part was committed, i.e. while
    # the next one is being scored or written), then a run that finishes.
    for more in (2, 3):
        before = done_parts(parts_dir)
        with log.open("ab") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        try:
            while done_parts(parts_dir) < before + more:
                assert proc.poll() is None, f"finished before it could be killed: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and done_parts(parts_dir) >= 5

    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "skipped" in final.stderr and "resuming" in final.stderr
    assert not parts_dir.exists()

    got = read_output(out)
    assert [r["id"] for r in got] == valid  # every valid id exactly once, in input order
    errors = [json.loads(line) for line in errors_path(out).read_text(encoding="utf-8").splitlines()]
    assert sorted(e["id"] for e in errors) == sorted(bad)

    clean = tmp_path / "clean.jsonl"
    run_job(ScoreOptions(inp, clean, model=tiny_model_tag, targets=[TARGET], part_size=8, batch_size=4,
                         threads=1, progress=False))
    assert_same(got, read_output(clean))
