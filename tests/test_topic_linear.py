"""benchmarks/topic_linear.py: the linear-part sweep runs end to end on a small ant21-shaped folder."""
import json

from benchmarks.topic_linear import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_sweep_scores_every_variant_on_dev(tmp_path, capsys):
    """Two topics with distinct words: every variant prints a dev macro-F1 row, and they separate them."""
    folder = tmp_path / "topic" / "ant21"
    folder.mkdir(parents=True)
    words = {"sport": "مباراة فريق هدف ملعب", "economy": "أسواق نفط بنك أسعار"}
    rows = [{"id": f"{label}-{i}", "title": f"{words[label].split()[i % 4]} خبر", "text": f"{words[label]} {i}",
             "label": label} for label in words for i in range(12)]
    _write(folder / "train.jsonl", rows[:8] + rows[12:20])
    _write(folder / "dev.jsonl", rows[8:12] + rows[20:])
    assert main(["--data-dir", str(tmp_path)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + 9  # header, eight classifiers and NB-SVM
    assert all(float(line.split("|")[2]) == 1.0 for line in table[1:])


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path)]) == 2
    assert "lacks train.jsonl" in capsys.readouterr().err
