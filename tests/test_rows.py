"""Rows of data files (khabar.models.rows): numbers, parse problems as rows, CSV, Parquet, UTF-8.

The Arabic texts here are written for these tests.
"""
from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from khabar.models import rows
from khabar.models.rows import FormatError, Row, csv_rows, jsonl_rows, numbered_lines, parquet_rows


def lines_of(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_lines_are_numbered_from_one_without_endings_or_bom():
    data = "\ufeffأول\r\n\nثالث\nرابع".encode()
    assert list(numbered_lines(lines_of(data))) == [
        (1, "أول".encode()), (2, b""), (3, "ثالث".encode()), (4, "رابع".encode())]


def test_jsonl_rows_keep_their_line_numbers_across_blank_lines():
    data = '{"id": 1, "text": "نص"}\n\n  \n{"id": 2, "text": "آخر"}\r\n'.encode()
    assert list(jsonl_rows(lines_of(data))) == [
        Row(1, {"id": 1, "text": "نص"}), Row(4, {"id": 2, "text": "آخر"})]


def test_a_broken_json_line_is_a_row_with_its_number_and_reading_goes_on():
    data = "\n".join(['{"id": 1}', '{"id": 2,', '[1, 2]', '{"id": 4}']).encode()
    found = list(jsonl_rows(lines_of(data)))
    assert [(r.number, r.values) for r in found] == [(1, {"id": 1}), (2, None), (3, None), (4, {"id": 4})]
    assert found[1].problem.startswith("invalid JSON: Expecting property name")
    assert found[1].problem.endswith("(column 10)")
    assert found[2].problem == "expected a JSON object, got list"


def test_a_json_array_is_not_json_lines():
    with pytest.raises(FormatError, match="a JSON array, not JSON Lines") as info:
        list(jsonl_rows(lines_of(b'\n  [{"id": 1}]\n')))
    assert info.value.line == 2


def test_non_utf8_bytes_are_a_problem_of_their_line_only():
    data = '{"id": 1}\n'.encode() + b'{"id": "\xff"}\n' + '{"id": "٣"}\n'.encode()
    found = list(jsonl_rows(lines_of(data)))
    assert [r.number for r in found] == [1, 2, 3] and found[2].values == {"id": "٣"}
    assert found[1].problem == ("invalid UTF-8 (byte 0xff at byte 9 of the line); "
                                "re-save the file as UTF-8")
    header, records = csv_rows(lines_of("id,text\n1,نص\n".encode() + b"2,\xc3(\n3,x\n"))
    assert [(r.number, r.problem and r.problem[:13]) for r in records] == [
        (2, None), (3, "invalid UTF-8"), (4, None)]
    with pytest.raises(FormatError, match="invalid UTF-8") as info:
        csv_rows(lines_of(b"id,t\xffxt\n1,x\n"))
    assert info.value.line == 1


def test_csv_records_are_numbered_by_their_first_line():
    data = '\ufeff id ,text\n1,"سطر\r\nوسطر"\n\n2,قصير\n3,a,b\n'.encode()
    header, records = csv_rows(lines_of(data))
    assert header == ["id", "text"]
    found = list(records)
    assert found[:2] == [Row(2, {"id": "1", "text": "سطر\nوسطر"}), Row(5, {"id": "2", "text": "قصير"})]
    assert found[2] == Row(6, None, "expected 2 columns like the header, got 3; "
                                    "quote cells holding the delimiter")
    _, tsv = csv_rows(lines_of("a\tb\nنص, بفاصلة\t2\n".encode()), delimiter="\t")
    assert [r.values for r in tsv] == [{"a": "نص, بفاصلة", "b": "2"}]


def test_csv_takes_a_field_far_over_the_default_limit():
    huge = "خبر " * 200_000  # 800,000 characters: csv's own limit is 131,072
    data = ("id,text\n" + f'1,"{huge}"\n2,قصير\n').encode()
    _, records = csv_rows(lines_of(data))
    assert [(r.number, len(r.values["text"])) for r in records] == [(2, len(huge)), (3, 4)]


def test_a_field_over_the_limit_is_a_problem_row_and_the_next_line_reads(monkeypatch):
    monkeypatch.setattr(rows, "FIELD_SIZE_LIMIT", 1000)
    try:
        _, records = csv_rows(lines_of(("id,text\n1," + "x" * 2000 + "\n2,قصير\n").encode()))
        found = list(records)
    finally:
        csv.field_size_limit(2**31 - 1)  # process-wide: put it back for every later test
    assert found[0].number == 2 and found[0].problem.startswith("unreadable CSV (field larger")
    assert found[1] == Row(3, {"id": "2", "text": "قصير"})


def test_csv_without_a_header_is_a_format_error():
    with pytest.raises(FormatError, match="no readable CSV header"):
        csv_rows(lines_of(b""))


def test_parquet_rows_are_numbered_and_read_in_batches(tmp_path):
    path = tmp_path / "in.parquet"
    table = pa.Table.from_pylist([{"id": i, "text": f"نص {i}", "extra": i * 2} for i in range(5)])
    pq.write_table(table, path)
    columns, records = parquet_rows(path, ["id", "text"], batch_size=2)
    assert columns == ["id", "text", "extra"]
    assert list(records) == [Row(i + 1, {"id": i, "text": f"نص {i}"}) for i in range(5)]
    with path.open("rb") as fh:
        assert [r.values["extra"] for r in parquet_rows(fh)[1]] == [0, 2, 4, 6, 8]


def test_a_file_that_is_not_parquet_is_a_format_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text(json.dumps({"id": 1}))
    with pytest.raises(FormatError, match="unreadable Parquet"):
        parquet_rows(path)
