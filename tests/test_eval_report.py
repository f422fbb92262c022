"""Report rendering and the --data-dir layout (no model needed)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from khabar.eval.datasets import EvalInputError, plan_sources, read_sets
from khabar.eval.render import Block, render_html, render_md, segments
from khabar.training.labels import STANCE_LABELS, bio_labels

SCHEMA = {"topic": ["economy", "sport"], "stance": list(STANCE_LABELS), "ner": bio_labels()}


def test_segments_group_entities():
    tokens = ["زار", "علي", "حسن", "بغداد", "أمس"]
    tags = ["O", "B-PERS", "I-PERS", "B-LOC", "O"]
    assert segments(tokens, tags) == [("زار", None), ("علي حسن", "PERS"), ("بغداد", "LOC"), ("أمس", None)]


def test_html_escapes_text_and_embeds_figures(tmp_path):
    png = b"\x89PNG\r\n\x1a\nfake"
    blocks = [Block("h1", "t"), Block("p", '<script>alert(1)</script> <a href="x">'),
              Block("imgs", [("a", png), ("b", png)]),
              Block("ner_errors", [{"head": "1 error", "tokens": ["في", "<b>"], "gold": ["O", "B-LOC"], "pred": ["O", "O"]}])]
    page = render_html(blocks, "title")
    assert "<script" not in page and not re.search(r"<[^>]*\shref=", page)
    assert "&lt;script&gt;" in page
    assert page.count('src="data:image/png;base64,') == 2
    assert '<mark class="LOC">&lt;b&gt;<sub>LOC</sub></mark>' in page
    md = render_md(blocks, tmp_path / "figures")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["a.png", "b.png"]
    assert "**[<b>]**{LOC}" in md


def _write_layout(root: Path) -> None:
    """A tiny data folder in the ../shared/data layout, written here (the project's own text)."""
    def jsonl(path: str, rows: list[dict]) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    jsonl("topic/ant21/dev.jsonl", [{"id": f"a{i}", "title": "", "text": "نص عن الاقتصاد", "label": "economy"} for i in range(4)])
    for name, label in (("ans", "agree"), ("baly2018", "discuss")):
        jsonl(f"stance/{name}/dev.jsonl", [{"id": f"{name}{i}", "target": "هدف", "text": "نص", "label": label} for i in range(3)])
    jsonl("stance/mawqif/train.jsonl", [{"id": f"m{i}", "target": "هدف", "text": "نص", "label": "none"} for i in range(200)])
    (root / "ner/anercorp").mkdir(parents=True)
    (root / "ner/anercorp/dev.conll").write_text("زار O\nبغداد B-LOC\n", encoding="utf-8")


def test_data_dir_fills_the_standard_dev_files(tmp_path):
    _write_layout(tmp_path)
    plan = plan_sources(data_dir=tmp_path, model_tasks=["topic", "stance", "ner"], limit=None)
    sets = read_sets(plan, SCHEMA, seed=13)
    assert [s.key for s in sets] == ["topic/ant21", "stance/ans", "stance/baly2018", "stance/mawqif", "ner/anercorp"]
    mawqif = next(s for s in sets if s.name == "mawqif")
    assert 20 <= len(mawqif.examples) <= 60  # the fixed 20 % held out of 200 rows
    assert {e.label for e in mawqif.examples} == {"neutral"}  # unified labels
    # Only the tasks the model has; an explicit file wins for its task; --limit is per file.
    plan = plan_sources(topic=tmp_path / "topic/ant21/dev.jsonl", data_dir=tmp_path, model_tasks=["topic"], limit=2)
    assert list(plan) == ["topic"] and plan["topic"][0].limit == 2
    with pytest.raises(EvalInputError, match="not a folder"):
        plan_sources(data_dir=tmp_path / "nope", model_tasks=["topic"])


def _shared() -> Path | None:
    env = os.environ.get("KHABAR_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.mark.shared
@pytest.mark.skipif(_shared() is None, reason="../shared/data is not here (set KHABAR_SHARED_DATA)")
def test_data_dir_on_shared_data():
    plan = plan_sources(data_dir=_shared(), model_tasks=["stance"], limit=None)
    sets = read_sets(plan, SCHEMA, seed=13)
    sizes = {s.name: len(s.examples) for s in sets}
    assert set(sizes) == {"ans", "baly2018", "mawqif"}
    assert 0.17 < sizes["mawqif"] / 3502 < 0.23
    assert all(not s.unknown_labels for s in sets)
    assert re.fullmatch(r".*mawqif/train\.jsonl", sets[-1].path)
