"""`khabar eval --actors FILE`: actor-level stance against the gold of an actors file.

The file is data/sample/actors.jsonl's format: articles, each with targets and the actors taking
sides on them (gold stance and every form of their name in the text). The model is given the gold
actor names (as a user would list them) and must find their mentions, group them, and label each
actor's stance. Reported: accuracy and macro-F1 over favor / against / neutral, the same for a
baseline that gives every actor the article-level stance, and how many gold actors had all their
name forms grouped together (and none of another actor's).
"""
from __future__ import annotations

import json
from pathlib import Path

from khabar.training.scoring import classification_metrics

LABELS = ["favor", "against", "neutral"]


class ActorsFileError(ValueError):
    """An actors file that cannot be evaluated; the message names the line and what is wrong."""


def read_actors_file(path: Path) -> list[dict]:
    """Articles of an actors file, checked (each has text and targets with actors and stances)."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            assert isinstance(row["text"], str) and row["text"].strip(), "empty text"
            for t in row["targets"]:
                assert isinstance(t["target"], str) and t["target"].strip(), "empty target"
                for a in t["actors"]:
                    assert a["stance"] in LABELS, f"stance {a['stance']!r} is not one of {LABELS}"
                    assert isinstance(a["actor"], str) and a["actor"].strip(), "empty actor"
        except (ValueError, KeyError, TypeError, AssertionError) as err:
            raise ActorsFileError(f"{path}:{n}: {err or type(err).__name__}") from None
        rows.append(row)
    if not rows:
        raise ActorsFileError(f"{path} holds no articles")
    return rows


def _same(form: str, mention: str) -> bool:
    # A mention may carry a proclitic the gold form leaves out ("والفصائل" for "الفصائل").
    return mention == form or mention.endswith(form) or form.endswith(mention)


def evaluate_actors(predictor, rows: list[dict], progress=None) -> dict:
    """Score actor stance and mention grouping on ``rows`` (see the module doc)."""
    from khabar.models.predictor import Article

    gold, pred, base, grouped, found, details = [], [], [], 0, 0, []
    for row in rows:
        targets = [t["target"] for t in row["targets"]]
        names = list(dict.fromkeys(a["actor"] for t in row["targets"] for a in t["actors"]))
        res = predictor.label([Article(row["text"], targets, ("stance",), actors=names)])[0]
        for t, entry in zip(row["targets"], res["stance"]):
            article = "neutral" if entry["label"] == "unrelated" else entry["label"]
            by_name = {a["actor"]: a for a in entry.get("actors", [])}
            for g in t["actors"]:
                p = by_name.get(g["actor"])
                gold.append(g["stance"])
                pred.append(p["label"] if p else "neutral")
                base.append(article)
                found += p is not None
                mentions = [m["text"] for m in p["mentions"]] if p else []
                others = [x["actor"] for x in t["actors"] if x["actor"] != g["actor"]]
                ok = bool(p) and all(any(_same(f, m) for m in mentions) for f in g["mentions"]) \
                    and not any(_same(o, m) for o in others for m in mentions if len(m) >= len(o))
                grouped += ok
                details.append({"id": row.get("id"), "target": t["target"], "actor": g["actor"], "gold": g["stance"],
                                "pred": pred[-1], "article_stance": article, "grouped": ok,
                                "evidence": [e["text"] for e in p["evidence"]] if p else []})
        if progress is not None:
            progress(1)
    model = classification_metrics(gold, pred, LABELS)
    baseline = classification_metrics(gold, base, LABELS)
    return {"n": len(gold), "articles": len(rows), "accuracy": model["accuracy"], "macro_f1": model["macro_f1"],
            "per_label": model["per_label"],
            "baseline_article_stance": {"accuracy": baseline["accuracy"], "macro_f1": baseline["macro_f1"]},
            "actors_found": found / len(gold), "grouping_accuracy": grouped / len(gold), "rows": details}


def actors_markdown(m: dict, tag: str, path: str) -> str:
    """A short report of :func:`evaluate_actors`."""
    lines = [f"# Actor stance: {tag} on {path}\n",
             f"{m['n']} (article, target, actor) rows in {m['articles']} articles.\n",
             "| system | accuracy | macro-F1 (favor, against, neutral) |", "|---|---:|---:|",
             f"| khabar actor stance | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |",
             f"| every actor gets the article's stance | {m['baseline_article_stance']['accuracy']:.3f} | "
             f"{m['baseline_article_stance']['macro_f1']:.3f} |\n",
             f"Actors found in the text: {m['actors_found']:.1%}; all of an actor's name forms grouped "
             f"together (and no other actor's): {m['grouping_accuracy']:.1%}.\n",
             "| label | precision | recall | F1 | n |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
              for k, v in m["per_label"].items()]
    wrong = [r for r in m["rows"] if r["gold"] != r["pred"]][:12]
    if wrong:
        lines += ["\nErrors (first 12):\n", "| article | actor | gold | predicted | evidence |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['actor']} | {r['gold']} | {r['pred']} | {' / '.join(r['evidence'])[:160]} |"
                  for r in wrong]
    return "\n".join(lines) + "\n"
