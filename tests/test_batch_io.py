"""Batch jobs without a model: readers, row checks, parts, output writers, the journal."""
from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from khabar.serving.batch import parts as parts_mod
from khabar.serving.batch.io import InputError, list_inputs, read_output, read_rows, write_output, count_rows
from khabar.serving.batch.parts import DiskFullError, JobError, PartStore, errors_path
from khabar.serving.batch.plan import InputPlan, fingerprint

ROWS = [{"id": "a", "text": "نص أول"}, {"id": "b", "text": "نص ثان"}, {"id": "c", "text": ""}]


def write_input(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON Lines, CSV or Parquet, by the path's extension."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", "text"])
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".parquet"])
def test_each_format_reads_the_same_rows(tmp_path, ext):
    path = write_input(tmp_path / f"in{ext}", ROWS)
    rows = list(read_rows(path, "id", "text"))
    assert [(r.id, r.text or None, r.row) for r in rows] == [("a", "نص أول", 1), ("b", "نص ثان", 2), ("c", None, 3)]
    assert count_rows(path) == 3


def test_folder_lists_data_files_sorted_and_skips_bookkeeping(tmp_path):
    write_input(tmp_path / "b.csv", ROWS)
    (tmp_path / "sub").mkdir()
    write_input(tmp_path / "sub" / "a.parquet", ROWS)
    write_input(tmp_path / "a.jsonl", ROWS)
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_inputs(tmp_path)] == ["a.jsonl", "b.csv", "sub/a.parquet"]
    with pytest.raises(InputError, match="no such file"):
        list_inputs(tmp_path / "sub" / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder has no"):
        list_inputs(tmp_path / "empty")


def test_unknown_format_and_misnamed_fields_fail_fast(tmp_path):
    with pytest.raises(InputError, match="unknown format"):
        list_inputs(write_input(tmp_path / "in.parquet", ROWS).rename(tmp_path / "in.txt"))
    for ext in (".csv", ".parquet", ".jsonl"):
        path = write_input(tmp_path / f"x{ext}", ROWS)
        with pytest.raises(InputError, match="--text-field"):
            list(read_rows(path, "id", "body"))
    (tmp_path / "arr.json").write_text('[{"id": 1, "text": "x"}]')
    with pytest.raises(InputError, match="JSON array"):
        list(read_rows(tmp_path / "arr.json", "id", "text"))


def test_rows_that_cannot_be_parsed_are_error_rows_not_a_crash(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes("id,text\na,نص\n".encode() + b"b,\xff\n" + "c,نص,زائد\nd,أخير\n".encode())
    rows = list(read_rows(path, "id", "text"))
    assert [(r.row, r.id, (r.problem or "")[:22]) for r in rows] == [
        (1, "a", ""), (2, None, "invalid UTF-8 (byte 0x"), (3, None, "expected 2 columns lik"), (4, "d", "")]
    assert count_rows(path) == 4
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "text": "\xff"}\n')
    [row] = read_rows(path, "id", "text")
    assert (row.row, row.problem[:13]) == (1, "invalid UTF-8")


def test_plan_finds_every_kind_of_bad_row_and_cuts_parts(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in [
        {"id": 1, "text": "نص"}, {"id": 2}, {"id": 3, "text": 42}, {"text": "بلا رقم"},
        {"id": 1, "text": "مكرر"}, {"id": 5, "text": "ط" * 11}, {"id": [5], "text": "x"}, {"id": 6, "text": "   "},
    ]] + ["{not json", "", json.dumps({"id": 7, "text": "أخير"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plan = InputPlan([path], path, id_field="id", text_field="text", max_chars=10)
    parts = list(plan.parts(4))
    assert [p.size for p in parts] == [4, 4, 2] and plan.n_parts == 3 and plan.rows == 10
    assert [v[0] for p in parts for v in p.valid] == [1, 7]
    reasons = {e["row"]: e["reason"] for p in parts for e in p.errors}
    assert reasons[2] == "no text"
    assert reasons[3].startswith("text is not a string")
    assert reasons[4] == "no id"
    assert reasons[5] == "duplicate id (first seen at in.jsonl:1)"
    assert reasons[6].startswith("text is longer than the limit of 10")
    assert reasons[7].startswith("id must be a string or an integer")
    assert reasons[8].startswith("no text")
    assert reasons[9].startswith("invalid JSON")
    assert plan.errors == 8 and plan.valid == 2 and plan.int_ids


def _result(i: int) -> dict:
    scores = {"culture": 0.25, "sport": 0.75}
    return {"id": i, "topic": {"label": "sport", "score": 0.75, "scores": scores},
            "stance": [{"target": "الاتفاق", "label": "favor", "score": 0.5, "scores": {"favor": 0.5, "against": 0.5}}],
            "entities": [{"text": "بغداد", "label": "LOC", "start": 3, "end": 8, "score": 0.9}],
            "warnings": [], "model": {"name": "khabar", "version": "v1"},
            # Every output row has the actors column (empty unless --actor was given).
            "actors": [{"target": "الاتفاق", "actor": "الحكومة", "source": "user", "label": "favor", "score": 0.6,
                        "scores": {"favor": 0.6, "against": 0.1, "neutral": 0.3},
                        "mentions": [{"text": "الحكومة", "start": 10, "end": 17}],
                        "evidence": [{"text": "رحبت الحكومة", "start": 5, "end": 17}]}]}


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".parquet"])
def test_outputs_round_trip_in_every_format(tmp_path, ext):
    part = tmp_path / "p.jsonl"
    rows = [_result(1), {**_result(2), "topic": None, "stance": [], "entities": [], "actors": []}]
    part.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / f"out{ext}"
    with out.open("wb") as fh:
        assert write_output([part], fh, ext.strip("."), int_ids=True) == 2
    back = read_output(out)
    if ext == ".csv":  # CSV has no types: ids come back as text
        rows = [{**r, "id": str(r["id"])} for r in rows]
    assert back == rows
    if ext == ".parquet":
        assert pq.read_schema(out).field("id").type == pa.int64()


def test_empty_parquet_output_has_the_schema(tmp_path):
    out = tmp_path / "out.parquet"
    with out.open("wb") as fh:
        write_output([], fh, "parquet", int_ids=False)
    assert read_output(out) == [] and "entities" in pq.read_schema(out).names


def _fp(tmp_path, **over) -> dict:
    src = tmp_path / "in.jsonl"
    if not src.exists():
        write_input(src, ROWS)
    args = dict(model="khabar:v1", tasks=["topic"], targets=[], text_field="text", id_field="id",
                max_chars=100, files=[src])
    return fingerprint(**{**args, **over})


def test_journal_refuses_another_job_and_restart_clears_it(tmp_path):
    out = tmp_path / "out.jsonl"
    with PartStore(out).open(_fp(tmp_path), part_size=2) as store:
        store.write_part(0, [{"id": "a"}], [{"id": "c", "reason": "no text"}])
        assert store.done_parts() == {0}
    with pytest.raises(JobError, match="different model.*--restart"):
        PartStore(out).open(_fp(tmp_path, model="khabar:v2"), part_size=2)
    with pytest.raises(JobError, match="different targets"):
        PartStore(out).open(_fp(tmp_path, targets=["x"]), part_size=2)
    with PartStore(out).open(_fp(tmp_path), part_size=5) as store:  # same job: resumes, keeps its part size
        assert store.done_parts() == {0} and store.part_size == 2
    with PartStore(out).open(_fp(tmp_path, model="khabar:v2"), part_size=3, restart=True) as store:
        assert store.done_parts() == set() and store.part_size == 3


def test_journal_is_locked_while_a_job_runs(tmp_path):
    out = tmp_path / "out.jsonl"
    with PartStore(out).open(_fp(tmp_path), part_size=2):
        with pytest.raises(JobError, match="another `khabar score`"):
            PartStore(out).open(_fp(tmp_path), part_size=2)


def test_merge_is_exact_and_a_finished_output_is_complete_for_the_same_job_only(tmp_path):
    out = tmp_path / "out.jsonl"
    with PartStore(out).open(_fp(tmp_path), part_size=2) as store:
        store.write_part(1, [{"id": "c"}], [])
        store.write_part(0, [{"id": "a"}, {"id": "b"}], [{"id": None, "reason": "no id"}])
        assert store.merge(2, "jsonl", int_ids=False) == (3, 1)
        store.remove()
    assert [r["id"] for r in read_output(out)] == ["a", "b", "c"]
    assert json.loads(errors_path(out).read_text())["reason"] == "no id"
    assert not out.with_name("out.jsonl.parts").exists()
    # The same job again: complete, nothing created. Another job, or a file made by hand: refused.
    store = PartStore(out).open(_fp(tmp_path), part_size=2)
    assert store.complete and not store.dir.exists()
    with pytest.raises(JobError, match="already exists.*--restart"):
        PartStore(out).open(_fp(tmp_path, targets=["x"]), part_size=2)
    store.receipt_path.unlink()
    with pytest.raises(JobError, match="already exists.*--restart"):
        PartStore(out).open(_fp(tmp_path), part_size=2)


def test_disk_full_stops_with_a_clear_message_and_keeps_finished_parts(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    store = PartStore(out).open(_fp(tmp_path), part_size=2)
    store.write_part(0, [{"id": "a"}], [])

    def full(fd):  # the disk fills up as the next part is flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parts_mod.os, "fsync", full)
    with pytest.raises(DiskFullError, match="disk full.*rerun the same command.*1 finished parts"):
        store.write_part(1, [{"id": "b"}], [])
    monkeypatch.undo()
    assert store.done_parts() == {0}
    assert not [p.name for p in store.dir.iterdir() if ".tmp-" in p.name]  # no half-written files
    store.close()
