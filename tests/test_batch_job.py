"""Batch jobs with the tiny model: formats, error rows, same labels as the service path, refusals."""
from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from khabar.serving.batch import JobError, ScoreOptions, errors_path, read_output, run_job
from khabar.serving.batch import parts as parts_mod
from khabar.serving.batch.parts import DiskFullError

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["الاتفاق الأمني"]


def sample_texts(n: int) -> list[str]:
    """Articles from the project's own sample (repeated when n is larger)."""
    lines = (ROOT / "data" / "sample" / "topic.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    return [texts[i % len(texts)] for i in range(n)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def assert_same(got, want, path="row"):
    """Equal labels, entities and structure; scores equal up to float noise (padding differs by batch)."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


@pytest.fixture(scope="module")
def reference(tiny_loaded):
    """Labels for the sample texts straight from the Predictor, as POST /label computes them."""
    from khabar.models.predictor import Article, Predictor
    from khabar.serving.batch.scorer import actor_column

    p = Predictor.from_loaded(tiny_loaded)
    texts = sample_texts(24)
    return {f"n{i}": {"id": f"n{i}", **actor_column(res)}
            for i, res in enumerate(p.label([Article(t, TARGETS) for t in texts]))}


def rows_for(ids) -> list[dict]:
    texts = sample_texts(24)
    return [{"id": i, "text": texts[int(i[1:])]} for i in ids]


@pytest.mark.parametrize("src,dst", [(".jsonl", ".jsonl"), (".csv", ".csv"), (".parquet", ".parquet"),
                                     ("folder", ".parquet"), (".jsonl", ".csv")])
def test_every_format_in_and_out_matches_the_service_labels(tiny_model_tag, reference, tmp_path, src, dst):
    ids = list(reference)
    rows = rows_for(ids)
    if src == "folder":
        inp = tmp_path / "in"
        (inp / "day2").mkdir(parents=True)
        write_rows(inp / "a.jsonl", rows[:8])
        write_rows(inp / "b.csv", rows[8:16])
        write_rows(inp / "day2" / "c.parquet", rows[16:])
    else:
        inp = write_rows(tmp_path / f"in{src}", rows)
    out = tmp_path / f"out{dst}"
    summary = run_job(ScoreOptions(inp, out, model=tiny_model_tag, targets=TARGETS, batch_size=5,
                                   part_size=7, progress=False))
    assert (summary.rows, summary.scored, summary.errors, summary.skipped) == (24, 24, 0, 0)
    got = read_output(out)
    assert [str(r["id"]) for r in got] == ids  # input order, one row each
    assert_same(got, [reference[i] for i in ids])
    assert not errors_path(out).exists() and not out.with_name(out.name + ".parts").exists()


@pytest.mark.parametrize("dst", [".parquet", ".csv", ".jsonl"])
def test_actor_option_fills_the_actors_column(tiny_model_tag, tmp_path, dst):
    text = "رحبت الحكومة العراقية بالاتفاق الأمني. أما الفصائل المسلحة فقد رفضته، وقالت الفصائل إنه لا يلزمها."
    inp = write_rows(tmp_path / "in.jsonl", [{"id": "a1", "text": text}, {"id": "a2", "text": sample_texts(1)[0]}])
    out = tmp_path / f"out{dst}"
    res = CliRunner().invoke(__import__("khabar.cli", fromlist=["app"]).app, [
        "score", str(inp), "-o", str(out), "--model", tiny_model_tag, "-t", TARGETS[0],
        "--actor", "الحكومة العراقية", "--actor", "الفصائل المسلحة", "-q"])
    assert res.exit_code == 0, res.output
    rows = {str(r["id"]): r for r in read_output(out)}
    actors = {a["actor"]: a for a in rows["a1"]["actors"]}
    assert {"الحكومة العراقية", "الفصائل المسلحة"} <= set(actors)
    fac = actors["الفصائل المسلحة"]
    assert fac["target"] == TARGETS[0] and fac["label"] in ("favor", "against", "neutral")
    assert [m["text"] for m in fac["mentions"]] == ["الفصائل المسلحة", "الفصائل"]
    for span in fac["mentions"] + fac["evidence"]:
        assert text[span["start"]: span["end"]] == span["text"]
    assert "actors" not in rows["a1"]["stance"][0]  # one place for them: the actors column


@pytest.mark.parametrize("dst", [".parquet", ".csv"])
def test_rows_carry_the_predictors_warnings(tiny_model_tag, tmp_path, dst):
    """Stance asked for without targets is warned about on every row, as POST /label does; a job
    that names no tasks (every task the model has) gets no such warning."""
    from khabar.models.predictor import NO_TARGETS_WARNING

    inp = write_rows(tmp_path / "in.jsonl", rows_for(["n0", "n1"]))
    for tasks, warned in ((["stance"], True), ([], False)):
        out = tmp_path / f"out-{warned}{dst}"
        run_job(ScoreOptions(inp, out, model=tiny_model_tag, tasks=tasks, progress=False))
        assert [NO_TARGETS_WARNING in r["warnings"] for r in read_output(out)] == [warned, warned]


def test_error_rows_go_to_the_errors_file_and_the_job_goes_on(tiny_model_tag, tmp_path):
    from khabar.cli import app

    texts = sample_texts(3)
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join([
        json.dumps({"id": "ok1", "text": texts[0]}, ensure_ascii=False),
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "num", "text": 12}),
        json.dumps({"text": texts[1]}, ensure_ascii=False),
        json.dumps({"id": "ok1", "text": texts[2]}, ensure_ascii=False),
        json.dumps({"id": "long", "text": "ا" * 1001}),
        "{broken",
        json.dumps({"id": "ok2", "text": texts[2]}, ensure_ascii=False),
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["score", str(inp), "--output", str(out), "--model", tiny_model_tag,
                                      "--max-chars", "1000", "--part-size", "3", "--tasks", "topic,entities", "-q"])
    assert result.exit_code == 0, result.output
    assert "2 scored" in result.output and "6 errors" in result.output and "rows/s" in result.output
    assert [r["id"] for r in read_output(out)] == ["ok1", "ok2"]
    assert all(r["stance"] == [] and r["topic"] for r in read_output(out))
    errors = [json.loads(line) for line in errors_path(out).read_text(encoding="utf-8").splitlines()]
    assert [(e["id"], e["row"]) for e in errors] == [("no-text", 2), ("num", 3), (None, 4), ("ok1", 5),
                                                    ("long", 6), (None, 7)]
    assert [e["reason"].split(" (")[0] for e in errors] == [
        "no text", "text is not a string", "no id", "duplicate id", "text is longer than the limit of 1,000 characters",
        "invalid JSON: Expecting property name enclosed in double quotes"]


def test_unknown_model_or_task_is_a_one_line_error(tiny_model_tag, tmp_path):
    from khabar.cli import app

    inp = write_rows(tmp_path / "in.jsonl", rows_for(["n0"]))
    for args, message in ((["--model", "khabar:nope"], "no model"), (["--tasks", "sentiment"], "unknown task")):
        result = CliRunner().invoke(app, ["score", str(inp), "-o", str(tmp_path / "o.jsonl"), "-q", *args]
                                    + ([] if "--model" in args else ["--model", tiny_model_tag]))
        assert result.exit_code == 1 and message in result.output


def test_disk_full_then_resume_refuses_other_jobs_and_finishes_exactly_once(
        tiny_model_tag, tiny_loaded, reference, tmp_path, monkeypatch):
    from khabar.models.store import save_model

    ids = list(reference)
    inp = write_rows(tmp_path / "in.jsonl", rows_for(ids))
    out = tmp_path / "out.parquet"
    opts = dict(model=tiny_model_tag, targets=TARGETS, batch_size=4, part_size=5, progress=False)
    real_fsync, calls = parts_mod.os.fsync, []

    def fsync_until_full(fd):  # job.json + 2 parts (2 files each, + folder syncs) fit; then the disk is full
        calls.append(fd)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(parts_mod.os, "fsync", fsync_until_full)
    with pytest.raises(DiskFullError, match="disk full"):
        run_job(ScoreOptions(inp, out, **opts))
    monkeypatch.undo()
    parts = out.with_name(out.name + ".parts")
    done = sorted(p.name for p in parts.glob("part-*.jsonl") if "errors" not in p.name)
    assert 1 <= len(done) < 5 and not out.exists()

    other = save_model(tiny_loaded.model, tiny_loaded.tokenizer, training=tiny_loaded.training, name="khabar-other")
    with pytest.raises(JobError, match="different model"):
        run_job(ScoreOptions(inp, out, **{**opts, "model": other}))
    with pytest.raises(JobError, match="different targets"):
        run_job(ScoreOptions(inp, out, **{**opts, "targets": ["هدف آخر"]}))
    with pytest.raises(JobError, match="different tasks"):
        run_job(ScoreOptions(inp, out, **{**opts, "tasks": ["topic"]}))

    summary = run_job(ScoreOptions(inp, out, **{**opts, "batch_size": 8}))  # batch size may change
    assert summary.skipped == 5 * len(done) and summary.scored == 24 - 5 * len(done)
    got = read_output(out)
    assert [r["id"] for r in got] == ids
    assert_same(got, [reference[i] for i in ids])
    assert run_job(ScoreOptions(inp, out, **opts)).already_complete  # the same command once more: a no-op
    with pytest.raises(JobError, match="already exists"):
        run_job(ScoreOptions(inp, out, **{**opts, "targets": ["هدف آخر"]}))
    summary = run_job(ScoreOptions(inp, out, **{**opts, "model": other, "restart": True}))
    assert summary.scored == 24 and {r["model"]["name"] for r in read_output(out)} == {"khabar-other"}


def test_a_crash_while_merging_or_cleaning_up_reruns_to_the_same_output(tiny_model_tag, reference, tmp_path, monkeypatch):
    ids = list(reference)[:10]
    inp = write_rows(tmp_path / "in.csv", rows_for(ids))
    out = tmp_path / "out.jsonl"
    opts = ScoreOptions(inp, out, model=tiny_model_tag, targets=TARGETS, part_size=4, progress=False)
    real_replace = parts_mod.os.replace

    def die_before_receipt(src, dst):  # OUTPUT is in place; the process dies before the receipt
        if Path(dst).name.endswith(".job.json") and Path(dst).name.startswith("."):
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(parts_mod.os, "replace", die_before_receipt)
    with pytest.raises(SystemExit):
        run_job(opts)
    monkeypatch.undo()
    assert out.exists() and out.with_name(out.name + ".parts").exists()
    summary = run_job(opts)
    assert (summary.scored, summary.skipped) == (0, 10)  # nothing scored twice: merged again

    monkeypatch.setattr(parts_mod.PartStore, "remove", lambda self: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        run_job(ScoreOptions(**{**opts.__dict__, "restart": True}))
    monkeypatch.undo()
    assert run_job(opts).already_complete
    assert not out.with_name(out.name + ".parts").exists()
    assert_same(read_output(out), [reference[i] for i in ids])
