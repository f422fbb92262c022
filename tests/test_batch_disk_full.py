"""Disk full while a real `khabar score` writes: a clear error, finished parts kept, and after space
returns the same command finishes with exactly one row per valid id.

The output folder is a real tmpfs of a few pages, mounted in a private mount namespace
(``unshare``), so nothing outside this test sees it and nothing needs unmounting. "Space returns"
is a remount of the same tmpfs with a larger size, between the two runs, as an operator freeing
space would do.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from khabar.serving.batch import ScoreOptions, read_output, run_job

ROOT = Path(__file__).resolve().parents[1]
TARGET = "الاتفاق"
N = 120
PART = 6

SCRIPT = r"""
set -u
mount -t tmpfs -o size="$SMALL" tmpfs "$MNT" || exit 90
score() { "$PY" -m khabar.cli score "$IN" --output "$MNT/out.jsonl" --model "$TAG" --targets "$TARGET" \
          --part-size "$PART" --batch-size 4 --quiet; }
score > "$RES/run1.out" 2> "$RES/run1.err"; echo $? > "$RES/run1.rc"
ls -a "$MNT/out.jsonl.parts" > "$RES/run1.parts" 2>/dev/null
df -k "$MNT" > "$RES/run1.df"
mount -o remount,size=32m "$MNT" || exit 91
score > "$RES/run2.out" 2> "$RES/run2.err"; echo $? > "$RES/run2.rc"
ls -a "$MNT" > "$RES/run2.ls"
cp "$MNT/out.jsonl" "$RES/out.jsonl" 2>/dev/null
cp "$MNT/out.jsonl.errors.jsonl" "$RES/out.errors.jsonl" 2>/dev/null
exit 0
"""


def namespace_prefix() -> list[str] | None:
    """How to get a private mount namespace where tmpfs can be mounted, or None if impossible here."""
    if shutil.which("unshare") is None:
        return None
    tries = [["unshare", "--mount", "--propagation", "private"]] if os.geteuid() == 0 else []
    tries.append(["unshare", "--user", "--map-root-user", "--mount"])
    for prefix in tries:
        probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


def make_input(path: Path) -> tuple[list[str], list[str]]:
    """N rows from data/sample, every 20th with an empty text; returns (valid ids, error ids)."""
    lines = (ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    valid, bad, rows = [], [], []
    for i in range(N):
        row = {"id": f"a{i}", "text": texts[i % len(texts)]}
        if i % 20 == 13:
            row["text"] = ""
            bad.append(row["id"])
        else:
            valid.append(row["id"])
        rows.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return valid, bad


def labels(row: dict) -> tuple:
    """The labels of an output row (scores may differ in the last bits between processes)."""
    return (row["id"], (row.get("topic") or {}).get("label"), tuple(s["label"] for s in row.get("stance") or []),
            tuple((e["start"], e["end"], e["label"]) for e in row.get("entities") or []))


def test_disk_full_stops_clearly_and_a_rerun_after_space_returns_is_exactly_once(tiny_model_tag, tmp_path):
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (no root and no unprivileged user namespaces), "
                    "so a real full disk cannot be made")
    inp, mnt, res = tmp_path / "in.jsonl", tmp_path / "mnt", tmp_path / "res"
    mnt.mkdir()
    res.mkdir()
    valid, bad = make_input(inp)

    # Size the tmpfs from the real output: a third of the finished job's size, so a few parts are
    # written and then the disk fills up partway (tmpfs counts whole 4 KiB pages).
    clean = tmp_path / "clean.jsonl"
    run_job(ScoreOptions(inp, clean, model=tiny_model_tag, targets=[TARGET], part_size=PART, batch_size=4,
                         threads=1, progress=False))
    small_kib = max(16, clean.stat().st_size // 3 // 1024)

    env = {**os.environ, "KHABAR_THREADS": "1", "MNT": str(mnt), "RES": str(res), "IN": str(inp),
           "PY": sys.executable, "TAG": tiny_model_tag, "TARGET": TARGET, "PART": str(PART),
           "SMALL": f"{small_kib}k"}
    done = subprocess.run(prefix + ["bash", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"namespace script failed ({done.returncode}): {done.stderr[-2000:]}"

    # First run: stops with a one-line error that names the cause and what to do; parts kept.
    err1 = (res / "run1.err").read_text()
    assert (res / "run1.rc").read_text().strip() == "1", err1[-2000:]
    assert "disk full" in err1 and "rerun the same command" in err1, err1[-2000:]
    assert "Traceback" not in err1
    kept = [n for n in (res / "run1.parts").read_text().split() if n.startswith("part-") and
            n.endswith(".jsonl") and not n.endswith(".errors.jsonl")]
    assert 0 < len(kept) < N // PART, f"expected a partial job, got {len(kept)} parts"
    assert not [n for n in (res / "run1.parts").read_text().split() if ".tmp-" in n], "half-written file left"

    # Second run, space back: resumes (the kept parts are not rescored) and finishes exactly once.
    err2 = (res / "run2.err").read_text()
    assert (res / "run2.rc").read_text().strip() == "0", err2[-2000:]
    assert "resuming" in err2, err2[-2000:]
    assert "out.jsonl.parts" not in (res / "run2.ls").read_text().split()
    got = read_output(res / "out.jsonl")
    assert [r["id"] for r in got] == valid
    assert [labels(r) for r in got] == [labels(r) for r in read_output(clean)]
    errors = [json.loads(line) for line in (res / "out.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(e["id"] for e in errors) == sorted(bad)
