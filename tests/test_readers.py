"""Readers for labelled data (khabar.training.readers): every format, every kind of bad data.

The Arabic sentences here are written for these tests. The last tests read the real datasets
in ../shared/data when that folder exists.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports datasets

from khabar.training.labels import DEFAULT_STANCE_MAP, NER_TYPES, STANCE_LABELS  # noqa: E402
from khabar.training.readers import (  # noqa: E402
    DataError,
    NerExample,
    ReadResult,
    StanceExample,
    TopicExample,
    read_any,
    read_ner,
    read_stance,
    read_topic,
)

TOPICS = [
    {"id": "a1", "title": "افتتاح معرض الكتاب",
     "text": "افتتح المعرض أبوابه صباح اليوم بمشاركة واسعة.", "label": "culture", "source": "t"},
    {"id": "a2", "title": "فوز الفريق المحلي",
     "text": "فاز الفريق بثلاثة أهداف مقابل هدف في المباراة.", "label": "sport", "source": "t"},
    {"id": "a3", "title": "ارتفاع أسعار النفط",
     "text": "ارتفعت أسعار النفط للمرة الثانية هذا الأسبوع.", "label": "economy", "source": "t"},
]
_TARGET = "رفع الدعم عن الوقود"
STANCES = [
    {"id": "s1", "target": _TARGET, "text": "نؤيد القرار لأنه يخفف العجز.", "label": "agree"},
    {"id": "s2", "target": _TARGET, "text": "القرار يضر بالأسر الفقيرة.", "label": "disagree"},
    {"id": "s3", "target": _TARGET, "text": "ناقش البرلمان القرار أمس.", "label": "discuss"},
    {"id": "s4", "target": _TARGET, "text": "أمطار غزيرة في الشمال.", "label": "unrelated"},
]
CONLL = """\
زار B-PERS
أحمد I-PERS
مدينة O
القاهرة B-LOC

أعلنت O
وزارة B-ORG
الصحة I-ORG
"""


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def error_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------- JSON Lines


def test_topic_jsonl_reads_examples_and_fingerprints_file_bytes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "news.jsonl", TOPICS)
    result = read_topic(path)
    assert isinstance(result, ReadResult)
    assert result.examples[0] == TopicExample(
        id="a1", title="افتتاح معرض الكتاب", text=TOPICS[0]["text"], label="culture")
    assert [e.label for e in result.examples] == ["culture", "sport", "economy"]
    assert result.skipped == []
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.fingerprint() == {"sha256": digest, "n": 3}


def test_topic_title_and_id_are_optional(tmp_path: Path) -> None:
    rows = [{"text": "نص الخبر الأول.", "label": "sport"},
            {"text": "نص الخبر الثاني.", "label": "sport"}]
    path = tmp_path / "bare.jsonl"
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows)
    path.write_text("\n" + lines, "utf-8")
    examples = read_topic(path).examples
    assert [(e.id, e.title) for e in examples] == [("bare-2", ""), ("bare-3", "")]


def test_stance_jsonl_with_default_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "claims.jsonl", STANCES)
    result = read_stance(path, label_map=DEFAULT_STANCE_MAP, labels=STANCE_LABELS)
    assert [e.label for e in result.examples] == ["favor", "against", "neutral", "unrelated"]
    assert result.examples[0] == StanceExample(
        id="s1", target="رفع الدعم عن الوقود", text="نؤيد القرار لأنه يخفف العجز.", label="favor")


def test_stance_keeps_dataset_labels_without_a_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "claims.jsonl", STANCES)
    assert [e.label for e in read_stance(path).examples] == [
        "agree", "disagree", "discuss", "unrelated"]


def test_stance_target_map_renames_exact_targets(tmp_path: Path) -> None:
    rows = [{"id": "m1", "target": "Covid Vaccine", "text": "اللقاح آمن", "label": "favor"},
            {"id": "m2", "target": "covid vaccine", "text": "اللقاح آمن", "label": "favor"}]
    result = read_stance(write_jsonl(tmp_path / "m.jsonl", rows), target_map={"Covid Vaccine": "لقاح كورونا"})
    assert [e.target for e in result.examples] == ["لقاح كورونا", "covid vaccine"]


def test_custom_label_map_and_integer_labels(tmp_path: Path) -> None:
    rows = [dict(STANCES[0], label=0), dict(STANCES[1], label=1)]
    path = write_jsonl(tmp_path / "ints.jsonl", rows)
    result = read_stance(path, label_map={"0": "favor", "1": "against"}, labels=STANCE_LABELS)
    assert [e.label for e in result.examples] == ["favor", "against"]


def test_gzip_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl.gz"
    path.write_bytes(gzip.compress(write_jsonl(tmp_path / "x.jsonl", TOPICS).read_bytes()))
    result = read_topic(path)
    assert len(result.examples) == 3
    assert result.fingerprint()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- CSV


def test_topic_csv_with_custom_columns_multiline_cells_and_generated_ids(tmp_path: Path) -> None:
    path = tmp_path / "articles.csv"
    path.write_text(
        "headline,body,category\n"
        'عنوان أول,"فقرة أولى.\nفقرة ثانية, بفاصلة.",culture\n'
        "عنوان ثان,نص قصير.,sport\n", "utf-8")
    examples = read_topic(path, title_field="headline", text_field="body",
                          label_field="category").examples
    assert examples == [
        TopicExample(id="articles-2", title="عنوان أول", text="فقرة أولى.\nفقرة ثانية, بفاصلة.",
                     label="culture"),
        TopicExample(id="articles-4", title="عنوان ثان", text="نص قصير.", label="sport"),
    ]


def test_stance_csv_and_tsv_with_custom_columns(tmp_path: Path) -> None:
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("\ufeffclaim,article,stance\n"
                        "رفع الدعم عن الوقود,نؤيد القرار.,Agree\n", "utf-8")
    tsv_path = tmp_path / "s.tsv"
    tsv_path.write_text("claim\tarticle\tstance\nرفع الدعم, مرة أخرى\tنرفض القرار.\tdisagree\n",
                        "utf-8")
    opts = dict(target_field="claim", text_field="article", label_field="stance",
                label_map=DEFAULT_STANCE_MAP, labels=STANCE_LABELS)
    assert read_stance(csv_path, **opts).examples == [
        StanceExample(id="s-2", target="رفع الدعم عن الوقود", text="نؤيد القرار.", label="favor")]
    [example] = read_stance(tsv_path, **opts).examples
    assert (example.target, example.label) == ("رفع الدعم, مرة أخرى", "against")


def test_csv_error_line_counts_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"سطر\nوسطر آخر",sport\n"  ",sport\n', "utf-8")
    assert error_of(read_topic, path) == f"{path} line 4, field 'text': whitespace-only text"


def test_csv_missing_column_is_reported_on_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("body,label\nنص,sport\n", "utf-8")
    message = error_of(read_topic, path, skip_bad=True)
    assert message.startswith(f"{path} line 1, field 'text': no such column (columns: body, label)")
    assert "text_field=" in message


def test_csv_wrong_number_of_cells(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nنص,sport,زائد\n", "utf-8")
    assert "line 2: expected 2 columns like the header, got 3" in error_of(read_topic, path)


# ---------------------------------------------------------------------------- CoNLL


def test_conll_sentences_ids_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "ner.conll"
    path.write_text(CONLL, "utf-8")
    result = read_ner(path, types=NER_TYPES)
    assert result.examples == [
        NerExample(id="ner-0", tokens=("زار", "أحمد", "مدينة", "القاهرة"),
                   tags=("B-PERS", "I-PERS", "O", "B-LOC")),
        NerExample(id="ner-1", tokens=("أعلنت", "وزارة", "الصحة"), tags=("O", "B-ORG", "I-ORG")),
    ]
    assert result.fingerprint() == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                    "n": 2}


def test_conll_tabs_extra_columns_docstart_crlf_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "multi.txt"
    path.write_bytes(
        "-DOCSTART- O\r\n\r\nفي\tحرف\tO\r\nبغداد\tاسم\tB-LOC\r\n\r\n\r\nغدا O".encode())
    examples = read_ner(path).examples
    assert [(e.id, e.tokens, e.tags) for e in examples] == [
        ("multi-0", ("في", "بغداد"), ("O", "B-LOC")), ("multi-1", ("غدا",), ("O",))]


def test_ner_label_map_renames_and_drops_types(tmp_path: Path) -> None:
    path = tmp_path / "other.bio"
    path.write_text("قال B-PER\nسامي I-PER\nيوم O\nالأحد B-DATE\n", "utf-8")
    [example] = read_ner(path, label_map={"per": "PERS", "DATE": "O"}, types=NER_TYPES).examples
    assert example.tags == ("B-PERS", "I-PERS", "O", "O")


def test_ner_unknown_type_names_line_and_allowed_types(tmp_path: Path) -> None:
    path = tmp_path / "other.conll"
    path.write_text("قال O\nسامي B-PER\n", "utf-8")
    message = error_of(read_ner, path, types=NER_TYPES)
    assert message.startswith(f"{path} line 2, field 'tag': unknown entity type 'PER'")
    assert "PERS, LOC, ORG, MISC" in message and "label_map=" in message


def test_broken_bio_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "iob1.conll"
    path.write_text("زار O\nأحمد O\nالقاهرة I-LOC\n", "utf-8")
    message = error_of(read_ner, path)
    assert message.startswith(f"{path} line 3, field 'tag': broken BIO: 'I-LOC'")
    assert "repair_bio" in message


def test_repair_bio_converts_and_records(tmp_path: Path) -> None:
    path = tmp_path / "iob1.conll"
    path.write_text("زار O\nأحمد I-PERS\nعمان I-LOC\nأمس O\n", "utf-8")
    result = read_ner(path, repair_bio=True)
    assert result.examples[0].tags == ("O", "B-PERS", "B-LOC", "O")
    assert result.repaired == [(str(path), 2, "I-PERS -> B-PERS"), (str(path), 3, "I-LOC -> B-LOC")]


def test_conll_line_without_tag_and_bad_tag(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_text("زار O\nأحمد\n", "utf-8")
    assert error_of(read_ner, path).startswith(f"{path} line 2: expected 'token TAG'")
    path.write_text("زار O\nأحمد PERSON\n", "utf-8")
    assert "line 2, field 'tag': tag 'PERSON' is not a BIO tag" in error_of(read_ner, path)


def test_conll_skip_bad_skips_whole_sentences_and_keeps_ids_stable(tmp_path: Path) -> None:
    path = tmp_path / "mixed.conll"
    path.write_bytes("جملة O\n\nكلمة O\nخطأ I-LOC\n\nنص".encode() + b" \xff O\n\n"
                     + "أخيرة O\n".encode())
    result = read_ner(path, skip_bad=True)
    assert [e.id for e in result.examples] == ["mixed-0", "mixed-3"]
    assert [(line, reason[:40]) for _, line, reason in result.skipped] == [
        (4, "field 'tag': broken BIO: 'I-LOC' at toke"),
        (6, "invalid UTF-8 (byte 0xff at byte 6 of th")]


def test_ner_jsonl_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ner.jsonl", [
        {"tokens": ["وصل", "الوزير", "إلى", "تونس"], "ner_tags": ["O", "O", "O", "B-LOC"]}])
    assert read_ner(path).examples[0].tags == ("O", "O", "O", "B-LOC")


# ---------------------------------------------------------------------------- Hugging Face datasets


def test_hf_saved_dataset_topic(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "title": datasets.Value("string"), "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["culture", "sport", "economy"])})
    ds = datasets.Dataset.from_dict({
        "title": [r["title"] for r in TOPICS], "text": [r["text"] for r in TOPICS],
        "label": [0, 1, 2]}, features=features)
    ds.save_to_disk(str(tmp_path / "topics"))
    result = read_topic(tmp_path / "topics")
    assert [(e.id, e.label) for e in result.examples] == [
        ("topics-1", "culture"), ("topics-2", "sport"), ("topics-3", "economy")]
    assert result.fingerprint()["n"] == 3 and len(result.fingerprint()["sha256"]) == 64
    assert read_topic(tmp_path / "topics").fingerprint() == result.fingerprint()


def test_hf_dataset_dict_split_selection_and_errors(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {k: [r[k] for r in STANCES] for k in ("id", "target", "text", "label")}
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(rows),
        "validation": datasets.Dataset.from_dict({k: v[:1] for k, v in rows.items()})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(read_stance(tmp_path / "dd").examples) == 4
    assert [e.id for e in read_stance(tmp_path / "dd", split="dev").examples] == ["s1"]
    message = error_of(read_stance, tmp_path / "dd", split="test")
    assert "no split 'test' (splits: train, validation)" in message
    message = error_of(read_stance, tmp_path / "dd", target_field="claim")
    assert message.startswith(f"{tmp_path / 'dd'}, field 'claim': no such column")


def test_hf_ner_with_class_label_ints_and_with_strings(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({
        "tokens": datasets.List(datasets.Value("string")),
        "ner_tags": datasets.List(datasets.ClassLabel(names=names))})
    datasets.Dataset.from_dict({
        "tokens": [["التقى", "محمد", "علي"], ["في", "الرباط"]],
        "ner_tags": [[0, 1, 2], [0, 3]]}, features=features).save_to_disk(str(tmp_path / "ints"))
    result = read_ner(tmp_path / "ints", label_map={"PER": "PERS"}, types=NER_TYPES)
    assert [(e.id, e.tags) for e in result.examples] == [
        ("ints-0", ("O", "B-PERS", "I-PERS")), ("ints-1", ("O", "B-LOC"))]

    datasets.Dataset.from_dict({
        "words": [["في", "الرباط"], ["ثم", "عاد"]], "labels": [["O", "I-LOC"], ["O"]],
    }).save_to_disk(str(tmp_path / "strs"))
    opts = dict(tokens_field="words", tags_field="labels", repair_bio=True, skip_bad=True)
    result = read_ner(tmp_path / "strs", **opts)
    assert result.examples[0].tags == ("O", "B-LOC")
    assert result.repaired == [(str(tmp_path / "strs"), 1, "I-LOC -> B-LOC")]
    assert result.skipped == [(str(tmp_path / "strs"), 2, "field 'labels': 1 tags for 2 tokens")]
    message = error_of(read_ner, tmp_path / "strs", tokens_field="words", tags_field="labels",
                       repair_bio=True)
    assert message == f"{tmp_path / 'strs'} row 2, field 'labels': 1 tags for 2 tokens"


def test_hf_folder_of_data_files_and_parquet(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "files"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", TOPICS)
    assert [e.id for e in read_topic(folder).examples] == ["a1", "a2", "a3"]
    datasets.Dataset.from_list(STANCES).to_parquet(str(tmp_path / "s.parquet"))
    assert [e.id for e in read_stance(tmp_path / "s.parquet").examples] == [
        "s1", "s2", "s3", "s4"]


def test_hf_hub_id_offline_is_a_clear_error() -> None:
    pytest.importorskip("datasets")
    message = error_of(read_topic, "hf:nobody/no-such-khabar-dataset")
    assert message.startswith("hf:nobody/no-such-khabar-dataset: could not load it")


# ---------------------------------------------------------------------------- bad data


@pytest.mark.parametrize(("row", "field", "reason"), [
    ({"id": "x", "text": "", "label": "sport"}, "text", "empty text"),
    ({"id": "x", "text": " \t", "label": "sport"}, "text", "whitespace-only text"),
    ({"id": "x", "text": 42, "label": "sport"}, "text", "expected a string, got int"),
    ({"id": "x", "text": "نص", "title": ["قائمة"], "label": "sport"}, "title",
     "expected a string, got list"),
    ({"id": "x", "body": "نص", "label": "sport"}, "text", "missing (fields: id, body, label)"),
    ({"id": "x", "text": "نص", "label": None}, "label", "expected a string label, got NoneType"),
    ({"id": 1.5, "text": "نص", "label": "sport"}, "id", "expected a string or integer id"),
])
def test_bad_topic_rows_name_file_line_and_field(tmp_path: Path, row: dict, field: str,
                                                 reason: str) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [TOPICS[0], row])
    message = error_of(read_topic, path)
    assert message.startswith(f"{path} line 2, field '{field}': {reason}")


def test_empty_target_in_stance(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [dict(STANCES[0], target="  ")])
    assert error_of(read_stance, path) == f"{path} line 1, field 'target': whitespace-only text"


def test_unknown_label_names_allowed_set_and_label_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", STANCES + [dict(STANCES[0], id="s5", label="maybe")])
    message = error_of(read_stance, path, label_map=DEFAULT_STANCE_MAP, labels=STANCE_LABELS)
    assert message.startswith(f"{path} line 5, field 'label': unknown label 'maybe'")
    assert "favor, against, neutral, unrelated" in message and "label_map=" in message


def test_invalid_utf8_reports_its_line(tmp_path: Path) -> None:
    good = json.dumps(TOPICS[0], ensure_ascii=False).encode()
    path = tmp_path / "x.jsonl"
    path.write_bytes(good + b"\n" + good[:20] + b"\xc3\x28" + b"\n")
    message = error_of(read_topic, path)
    assert message.startswith(f"{path} line 2: invalid UTF-8 (byte 0xc3 at byte 21 of the line)")
    csv_path = tmp_path / "x.csv"
    csv_path.write_bytes("text,label\nنص,sport\n".encode() + b"\xff,sport\n")
    assert error_of(read_topic, csv_path).startswith(f"{csv_path} line 3: invalid UTF-8")


@pytest.mark.parametrize(("line", "reason"), [
    ('{"id": "x", "text": "نص" "label": "sport"}', "invalid JSON: Expecting ',' delimiter"),
    ('["نص", "sport"]', "expected a JSON object, got list"),
])
def test_invalid_json(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(TOPICS[0], ensure_ascii=False) + "\n" + line + "\n", "utf-8")
    assert error_of(read_topic, path).startswith(f"{path} line 2: {reason}")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [TOPICS[0], TOPICS[1], dict(TOPICS[2], id="a1")])
    assert error_of(read_topic, path) == (
        f"{path} line 3, field 'id': duplicate id 'a1' (first at line 1)")
    result = read_topic(path, skip_bad=True)
    assert [e.id for e in result.examples] == ["a1", "a2"]
    assert result.skipped == [(str(path), 3, "field 'id': duplicate id 'a1' (first at line 1)")]


def test_skip_bad_records_every_skipped_row(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    rows = [json.dumps(r, ensure_ascii=False) for r in TOPICS]
    path.write_text("\n".join([
        rows[0], "{broken", rows[1], json.dumps({"id": "e", "text": "", "label": "sport"}),
        rows[2], json.dumps({"id": "u", "text": "نص", "label": "weather"})]) + "\n", "utf-8")
    result = read_topic(path, labels=["culture", "sport", "economy"], skip_bad=True)
    assert [e.id for e in result.examples] == ["a1", "a2", "a3"]
    assert [(line, reason[:22]) for _, line, reason in result.skipped] == [
        (2, "invalid JSON: Expectin"), (4, "field 'text': empty te"), (6, "field 'label': unknown")]
    assert result.fingerprint()["n"] == 3


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "e", "text": "", "label": "sport"}])
    assert error_of(read_topic, path, skip_bad=True) == (
        f"{path}: no examples left after skipping 1 bad rows")


def test_missing_empty_and_unknown_files(tmp_path: Path) -> None:
    assert "no such file or folder" in error_of(read_topic, tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n \n", "utf-8")
    assert error_of(read_topic, tmp_path / "empty.jsonl") == (
        f"{tmp_path / 'empty.jsonl'}: empty file: no examples to read")
    (tmp_path / "data.xml").write_text("<a/>", "utf-8")
    assert "cannot tell the format from the extension '.xml'" in error_of(
        read_topic, tmp_path / "data.xml")
    (tmp_path / "arr.json").write_text("[{}]", "utf-8")
    assert "a JSON array, not JSON Lines" in error_of(read_topic, tmp_path / "arr.json")
    (tmp_path / "n.conll").write_text(CONLL, "utf-8")
    assert "use read_ner" in error_of(read_topic, tmp_path / "n.conll")


def test_data_error_is_a_value_error_with_parts(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "e", "text": "", "label": "sport"}])
    with pytest.raises(ValueError) as info:
        read_topic(path)
    err = info.value
    assert isinstance(err, DataError)
    assert (err.source, err.line, err.field, err.reason) == (str(path), 1, "text", "empty text")
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_read_any_dispatches_by_task(tmp_path: Path) -> None:
    topic = write_jsonl(tmp_path / "t.jsonl", TOPICS)
    stance = write_jsonl(tmp_path / "s.jsonl", STANCES)
    (tmp_path / "n.conll").write_text(CONLL, "utf-8")
    assert isinstance(read_any("topic", topic).examples[0], TopicExample)
    assert read_any("stance", stance, label_map=DEFAULT_STANCE_MAP).examples[0].label == "favor"
    assert isinstance(read_any("ner", tmp_path / "n.conll").examples[0], NerExample)
    with pytest.raises(ValueError, match="unknown task 'sentiment'"):
        read_any("sentiment", topic)


# ---------------------------------------------------------------------------- the real datasets

SHARED = Path(os.environ.get("KHABAR_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")

# Counts from ../shared/data/README.md (train / dev rows, or sentences for NER).
REAL = [
    ("topic", "topic/ant21/train.jsonl", 24_030),
    ("topic", "topic/ant21/dev.jsonl", 3_004),
    ("stance", "stance/ans/train.jsonl", 2_652),
    ("stance", "stance/ans/dev.jsonl", 755),
    ("stance", "stance/baly2018/train.jsonl", 1_842),
    ("stance", "stance/baly2018/dev.jsonl", 587),
    ("stance", "stance/mawqif/train.jsonl", 3_502),
    ("ner", "ner/anercorp/train.conll", 3_566),
    ("ner", "ner/anercorp/dev.conll", 397),
]


@pytest.mark.shared
@pytest.mark.parametrize(("task", "rel", "count"), REAL, ids=[r[1] for r in REAL])
def test_real_datasets_read_with_the_published_counts(task: str, rel: str, count: int) -> None:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder sits beside the project)")
    opts: dict[str, Any] = {"stance": dict(label_map=DEFAULT_STANCE_MAP, labels=STANCE_LABELS),
                            "ner": dict(types=NER_TYPES, repair_bio=True)}.get(task, {})
    started = time.perf_counter()
    result = read_any(task, path, **opts)
    seconds = time.perf_counter() - started
    assert len(result.examples) == count
    assert result.skipped == []
    assert result.fingerprint()["n"] == count
    if task == "stance":
        assert set(Counter(e.label for e in result.examples)) <= set(STANCE_LABELS)
    if task == "ner" and result.repaired:
        # Whatever the reader repaired must have been a hard error without repair_bio.
        assert "broken BIO" in error_of(read_ner, path, types=NER_TYPES)
    print(f"{rel}: {len(result.examples)} examples in {seconds:.2f} s")
