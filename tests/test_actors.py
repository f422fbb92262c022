"""Actors: mentions found and grouped with exact offsets, evidence clauses, actor stance in results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from khabar.models.actors import clauses, evidence, find_actors, short_forms

ARTICLE = ("أعلن رئيس الوزراء سالم الجبوري توقيع الاتفاق الأمني مع الولايات المتحدة، ورحبت الحكومة العراقية بالاتفاق. "
           "ووصل قائد فيلق القدس إسماعيل قآاني إلى بغداد، والتقى قآاني قادة الأحزاب. "
           "أما الفصائل المسلحة فقد أعلنت أنها ترفض نتائج الحوار، وقالت الفصائل إن الاتفاق لا يلزمها. "
           "وعارض حزب التجمع الاتفاق، وقال الحزب إنه مرفوض، بينما أيده حزب الوفاق.")


def test_mentions_are_grouped_with_exact_offsets():
    actors = {a.name: a for a in find_actors(ARTICLE, ["الفصائل المسلحة", "الحكومة العراقية", "إسماعيل قآاني",
                                                         "حزب التجمع", "حزب الوفاق"], [])}
    texts = lambda a: [ARTICLE[s:e] for s, e in actors[a].mentions]  # noqa: E731
    assert texts("الفصائل المسلحة") == ["الفصائل المسلحة", "الفصائل"]
    assert texts("إسماعيل قآاني") == ["إسماعيل قآاني", "قآاني"]
    assert texts("الحكومة العراقية") == ["الحكومة العراقية"]
    # "الحزب" goes to the party named last before it, not to the other one
    assert texts("حزب التجمع") == ["حزب التجمع", "الحزب"]
    assert texts("حزب الوفاق") == ["حزب الوفاق"]


def test_mentions_with_proclitics_and_spelling_variants():
    text = "التقى الوزير بالحكومة العراقيه ثم قال للحكومة العراقية إن وفد الحكومة العراقية وصل."
    actor = find_actors(text, ["الحكومة العراقية"], [])[0]
    assert [text[s:e] for s, e in actor.mentions] == ["الحكومة العراقيه", "لحكومة العراقية", "الحكومة العراقية"]


def test_entities_become_actors_and_short_forms_join_them():
    start = ARTICLE.index("سالم الجبوري")
    ents = [{"text": "سالم الجبوري", "label": "PERS", "start": start, "end": start + len("سالم الجبوري")},
            {"text": "بغداد", "label": "LOC", "start": ARTICLE.index("بغداد"), "end": ARTICLE.index("بغداد") + 5}]
    actors = find_actors(ARTICLE, [], ents)
    assert [a.name for a in actors] == ["سالم الجبوري"]  # places are not actors
    assert actors[0].source == "PERS"
    assert short_forms("سالم الجبوري", "PERS") == ["الجبوري"]
    assert short_forms("الفصائل المسلحة", "user") == ["الفصائل"]
    assert short_forms("حزب التجمع", "user") == []


def test_clauses_split_where_the_report_turns_to_another_side():
    parts = [ARTICLE[s:e] for s, e in clauses(ARTICLE)]
    assert "بينما أيده حزب الوفاق" in parts
    assert all(p == p.strip() and p for p in parts)
    actors = find_actors(ARTICLE, ["حزب التجمع", "حزب الوفاق"], [])
    ev = [ARTICLE[s:e] for s, e in evidence(ARTICLE, actors[0], actors[1:])]
    assert any("وعارض حزب التجمع الاتفاق" in c for c in ev)
    assert not any("حزب الوفاق" in c for c in ev)


def test_predictor_answers_actors_under_each_target(tiny_loaded):
    from khabar.models.predictor import Article, Predictor

    p = Predictor.from_loaded(tiny_loaded)
    res = p.label([Article(ARTICLE, ["الاتفاق الأمني"], ("topic",), actors=("الفصائل المسلحة", "حزب التجمع"))])[0]
    assert res["entities"] == []  # computed for the actors, not asked for
    entry = res["stance"][0]
    names = [a["actor"] for a in entry["actors"]]
    assert {"الفصائل المسلحة", "حزب التجمع"} <= set(names)
    for a in entry["actors"]:
        assert a["label"] in ("favor", "against", "neutral")
        assert abs(sum(a["scores"].values()) - 1) < 1e-5
        for span in a["mentions"] + a["evidence"]:
            assert ARTICLE[span["start"]: span["end"]] == span["text"]
        assert a["evidence"], "every actor found has the clauses that mention it"
    with pytest.raises(ValueError, match="unknown task"):
        p.label([Article(ARTICLE, ["x"], ("actor",))])


def test_cues_decide_actors_and_one_only_mentioned_is_neutral(tiny_loaded):
    """Whatever the (untrained) tiny head says, the reporting words decide: the factions reject,
    the government welcomes, the party opposes; Qaani only meets people, so he is neutral."""
    from khabar.models.predictor import Article, Predictor

    actors = ("الفصائل المسلحة", "الحكومة العراقية", "حزب التجمع", "إسماعيل قآاني")
    entry = Predictor.from_loaded(tiny_loaded).label(
        [Article(ARTICLE, ["الاتفاق الأمني"], ("stance",), actors=actors)])[0]["stance"][0]
    got = {a["actor"]: a for a in entry["actors"]}
    assert {k: got[k]["label"] for k in actors} == {
        "الفصائل المسلحة": "against", "الحكومة العراقية": "favor", "حزب التجمع": "against",
        "إسماعيل قآاني": "neutral"}
    assert "ورحبت" in [c["text"] for c in got["الحكومة العراقية"]["cues"]]
    assert got["إسماعيل قآاني"]["cues"] == []
    for a in got.values():
        assert a["label"] == max(a["scores"], key=a["scores"].get)
        for span in a["cues"]:
            assert ARTICLE[span["start"]: span["end"]] == span["text"]
            assert any(e["start"] <= span["start"] and span["end"] <= e["end"] for e in a["evidence"])


def test_sample_actor_mentions_are_grouped():
    """On the project's own actors.jsonl, the user's actors are found with all their gold forms."""
    rows = [json.loads(line) for line in
            (Path(__file__).resolve().parents[1] / "data" / "sample" / "actors.jsonl").read_text().splitlines()]
    total = grouped = 0
    for r in rows:
        for t in r["targets"]:
            names = [a["actor"] for a in t["actors"]]
            found = {a.name: {r["text"][s:e] for s, e in a.mentions} for a in find_actors(r["text"], names, [])}
            for gold in t["actors"]:
                total += 1
                got = found.get(gold["actor"], set())
                grouped += all(any(m.endswith(g) or g.endswith(m) for m in got) for g in gold["mentions"])
    assert grouped / total >= 0.95


def test_eval_actors_cli_reports_stance_grouping_and_baseline(tiny_model_tag, tmp_path):
    from typer.testing import CliRunner

    from khabar.cli import app

    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "actors.jsonl"
    rows = sample.read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "actors.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "--model", tiny_model_tag, "--actors", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o" / "actors.json").read_text())
    n = sum(len(t["actors"]) for r in map(json.loads, rows) for t in r["targets"])
    assert m["n"] == n and 0 <= m["macro_f1"] <= 1 and m["grouping_accuracy"] >= 0.9
    assert "baseline_article_stance" in m and "khabar actor stance" in (tmp_path / "o" / "actors.md").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "نص", "targets": [{"target": "x", "actors": [{"actor": "a", "stance": "maybe"}]}]}\n')
    res = CliRunner().invoke(app, ["eval", "--model", tiny_model_tag, "--actors", str(bad), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output


def test_cue_scores_are_side_shares_and_neutral_without_a_side():
    from khabar.models.actor_stance import cue_scores
    from khabar.models.stance_cues import Cue

    cues = [Cue(0, 3, "favor", 1.0), Cue(5, 8, "against", 0.5)]
    assert cue_scores("favor", cues) == {"favor": 2 / 3, "against": 1 / 3, "neutral": 0.0}
    assert cue_scores(None, []) == {"favor": 0.0, "against": 0.0, "neutral": 1.0}
    tied = [Cue(0, 3, "favor", 1.0), Cue(5, 8, "against", 1.0)]
    assert cue_scores(None, tied)["neutral"] == 1.0  # as many each way: no side stated


def test_stance_head_runs_for_actors_only_when_it_can_change_a_label(tiny_loaded, monkeypatch):
    """With the cues deciding alone (CUE_WEIGHT 1) the second encoder pass over (evidence, claim)
    pairs is skipped (the factions' speech is not read either: their cue "ترفض" decides); with a
    lower weight the head is read and blended in."""
    import khabar.models.actor_stance as actor_stance
    from khabar.models.predictor import Article, Predictor

    p = Predictor.from_loaded(tiny_loaded)
    calls = []
    real = p._score_claims
    monkeypatch.setattr(p, "_score_claims", lambda pairs: calls.append(len(pairs)) or real(pairs))
    request = [Article(ARTICLE, ["الاتفاق الأمني"], ("stance",), actors=("الفصائل المسلحة",))]
    shipped = {a["actor"]: a["label"] for a in p.label(request)[0]["stance"][0]["actors"]}
    assert actor_stance.CUE_WEIGHT == 1.0 and calls == []
    monkeypatch.setattr(actor_stance, "CUE_WEIGHT", 0.6)
    blended = {a["actor"]: a["label"] for a in p.label(request)[0]["stance"][0]["actors"]}
    assert calls and calls[0] >= 1
    assert blended == shipped  # above 0.5 the cues decide either way


SPEECH_ARTICLE = ("وقال رئيس النقابة خالد منصور إن الخطة ستدمر آلاف الوظائف في القطاع. "
                  "والتقى الوسيط سمير داود الطرفين في العاصمة.")


@pytest.mark.parametrize("against, expected", [(0.9, "against"), (0.55, "neutral")])
def test_an_actor_without_a_cue_is_read_from_its_own_words(tiny_loaded, monkeypatch, against, expected):
    """No stance word, but the actor's reported speech: the stance head reads that speech against
    the target, and its side counts when it is at least SPEECH_FLOOR sure. The head's answer is
    fixed here (the tiny model's is noise) to test the decision; the pairs it gets are real."""
    from khabar.models.actor_stance import SPEECH_FLOOR
    from khabar.models.predictor import Article, Predictor

    assert 0.55 < SPEECH_FLOOR <= 0.9
    p = Predictor.from_loaded(tiny_loaded)
    read = []
    monkeypatch.setattr(p, "_score_claims", lambda pairs: read.extend(pairs) or [
        {"favor": 0.05, "against": against, "neutral": 0.95 - against, "unrelated": 0.0} for _ in pairs])
    entry = p.label([Article(SPEECH_ARTICLE, ["الخطة"], ("stance",),
                             actors=("خالد منصور", "سمير داود"))])[0]["stance"][0]
    got = {a["actor"]: a for a in entry["actors"]}
    assert read == [("الخطة ستدمر آلاف الوظائف في القطاع", "الخطة")]  # the mediator says nothing
    assert got["خالد منصور"]["label"] == expected and got["سمير داود"]["label"] == "neutral"
    spans = got["خالد منصور"]["cues"]
    assert [c["text"] for c in spans] == (["الخطة ستدمر آلاف الوظائف في القطاع"] if expected == "against" else [])
    for c in spans:
        assert SPEECH_ARTICLE[c["start"]:c["end"]] == c["text"]
