"""benchmarks/topic_probe.py: the head-versus-probe table on a stored model, end to end."""
import json
from pathlib import Path

from benchmarks.topic_probe import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "topic.jsonl"


def test_probe_table_scores_every_part_on_rows_the_encoder_never_saw(tiny_model_tag, tmp_path, capsys):
    """The sample's articles with one word added (texts the tiny model never trained on): every
    row of the table carries a macro-F1 between 0 and 1."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    unseen = tmp_path / "topic.jsonl"
    changed = [{**r, "id": f"u{i}", "text": r["text"] + " اليوم"} for i, r in enumerate(rows)]
    unseen.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in changed), encoding="utf-8")
    assert main(["--model", tiny_model_tag, "--train", str(unseen), "--slice", "0.3"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + 6  # header, head, two probes, linear, two blends
    assert all(0.0 <= float(line.split("|")[2]) <= 1.0 for line in table[1:])
    assert "0 it did" in out


def test_a_file_the_encoder_trained_on_entirely_is_refused(tiny_model_tag, capsys):
    assert main(["--model", tiny_model_tag, "--train", str(SAMPLE)]) == 2
    assert "outside the encoder's training set" in capsys.readouterr().err


def test_missing_file_and_unknown_model_are_clear_errors(tmp_path, capsys):
    assert main(["--model", "khabar:nosuchmodel", "--train", str(tmp_path / "none.jsonl")]) == 2
    assert "no file" in capsys.readouterr().err
    assert main(["--model", "khabar:nosuchmodel", "--train", str(SAMPLE)]) == 2
    assert "nosuchmodel" in capsys.readouterr().err
