"""The Ray engine on a local Ray gives the same rows as the local engine (and resumes its parts)."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from khabar.serving.batch import DiskFullError, ScoreOptions, errors_path, read_output, run_job
from khabar.serving.batch import parts as parts_mod

pytest.importorskip("ray", reason="Ray is not installed: make setup-ray (pip install 'khabar[ray]')")

ROOT = Path(__file__).resolve().parents[1]
TARGET = "الاتفاق"


def assert_same(got, want, path="row"):
    """Equal structure and labels; floats equal up to noise (batches are cut differently)."""
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


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine_and_finishes_a_local_job(tiny_model_tag, tmp_path, monkeypatch):
    lines = (ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()][:40]
    rows = [{"id": i, "text": t} for i, t in enumerate(texts)] + [{"id": 99, "text": None}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    common = dict(model=tiny_model_tag, targets=[TARGET], part_size=10, batch_size=8, progress=False)

    local = tmp_path / "local.parquet"
    run_job(ScoreOptions(inp, local, **common))
    # A job stopped by a full disk after two parts on the local engine is finished on Ray.
    on_ray = tmp_path / "ray.parquet"
    real_fsync, calls = parts_mod.os.fsync, []

    def fsync_until_full(fd):
        calls.append(fd)
        if len(calls) > 10:  # job.json, then two parts
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(parts_mod.os, "fsync", fsync_until_full)
    with pytest.raises(DiskFullError):
        run_job(ScoreOptions(inp, on_ray, **common))
    monkeypatch.undo()
    summary = run_job(ScoreOptions(inp, on_ray, engine="ray", ray_actors=2, **common))
    assert (summary.skipped, summary.scored, summary.errors) == (20, 20, 1)
    assert_same(read_output(on_ray), read_output(local))
    assert errors_path(on_ray).read_text() == errors_path(local).read_text()

    import ray

    assert not ray.is_initialized()  # the local Ray it started is shut down
