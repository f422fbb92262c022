"""Which claim should an actor's evidence be read against? Scores the actor-stance rows of a file
with several claim forms (models.actor_stance.actor_claim) on one stored model.

    .venv/bin/python -m benchmarks.actor_claims --model khabar:TAG [--file data/sample/actors.jsonl]

Prints macro-F1, accuracy and per-label F1 for each form, and for "supports" averaged with a
reading of "rejects"/"opposes" whose favour and opposition are swapped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LABELS = ["favor", "against", "neutral"]
CLAIMS = {
    "target": lambda a, t: t,
    "supports": lambda a, t: f"{a} يؤيد {t}",
    "welcomes": lambda a, t: f"{a} يرحب ب{t} ويدعمه",
    "rejects": lambda a, t: f"{a} يرفض {t}",
    "opposes": lambda a, t: f"{a} يعارض {t}",
}
SWAPPED = ("rejects", "opposes")  # agreeing with these is opposition


def actor_scores(predictor, rows: list[dict]) -> tuple[list[str], np.ndarray]:
    """Gold labels and [favor, against, neutral] scores of every (article, target, actor) row."""
    from khabar.models.predictor import Article

    gold, out = [], []
    for row in rows:
        targets = [t["target"] for t in row["targets"]]
        names = list(dict.fromkeys(a["actor"] for t in row["targets"] for a in t["actors"]))
        res = predictor.label([Article(row["text"], targets, ("stance",), actors=names)])[0]
        for t, entry in zip(row["targets"], res["stance"]):
            found = {a["actor"]: a["scores"] for a in entry.get("actors", [])}
            for g in t["actors"]:
                s = found.get(g["actor"], {"favor": 0.0, "against": 0.0, "neutral": 1.0})
                gold.append(g["stance"])
                out.append([s[k] for k in LABELS])
    return gold, np.array(out)


def main() -> None:
    import khabar.models.actor_stance as actor_stance
    from khabar.eval.actors import read_actors_file
    from khabar.models.predictor import Predictor
    from khabar.models.store import load_model
    from khabar.training.scoring import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="stored model tag, e.g. khabar:abc123")
    ap.add_argument("--file", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample" / "actors.jsonl")
    args = ap.parse_args()
    predictor = Predictor.from_loaded(load_model(args.model))
    rows = read_actors_file(args.file)
    shipped = actor_stance.actor_claim
    scores, gold = {}, []
    try:
        for name, claim in CLAIMS.items():
            actor_stance.actor_claim = claim
            gold, scores[name] = actor_scores(predictor, rows)
    finally:
        actor_stance.actor_claim = shipped
    for name in SWAPPED:
        scores[name] = scores[name][:, [1, 0, 2]]
        scores[f"supports+{name}"] = (scores["supports"] + scores[name]) / 2
    print(f"{args.model} on {args.file} ({len(gold)} rows)")
    for name, s in scores.items():
        m = classification_metrics(gold, [LABELS[i] for i in s.argmax(1)], LABELS)
        per = " ".join(f"{k} {v['f1']:.2f}" for k, v in m["per_label"].items())
        print(f"{name:18s} macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}  ({per})")


if __name__ == "__main__":
    main()
