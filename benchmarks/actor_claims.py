"""Which claim should an actor's evidence be read against, and what do stance cues add? Scores the
actor-stance rows of a file with several claim forms (models.actor_stance.actor_claim) read by the
stance head alone (cues off), then the shipped form with the cues (models.stance_cues) on.

    .venv/bin/python -m benchmarks.actor_claims --model khabar:TAG [--file data/sample/actors.jsonl]

Prints macro-F1, accuracy and per-label F1 for each form, for "supports" averaged with a reading
of "rejects"/"opposes" whose favour and opposition are swapped, for the shipped way (cues decide,
an actor without one is neutral), and for letting the head decide actors without a cue (always,
or when it is at least 0.6 / 0.8 sure), with how many rows had a cue.
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


def actor_scores(predictor, rows: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Gold labels, [favor, against, neutral] scores of every (article, target, actor) row, and
    whether cues decided the row."""
    from khabar.models.predictor import Article

    gold, out, cued = [], [], []
    for row in rows:
        targets = [t["target"] for t in row["targets"]]
        names = list(dict.fromkeys(a["actor"] for t in row["targets"] for a in t["actors"]))
        res = predictor.label([Article(row["text"], targets, ("stance",), actors=names)])[0]
        for t, entry in zip(row["targets"], res["stance"]):
            found = {a["actor"]: a for a in entry.get("actors", [])}
            for g in t["actors"]:
                a = found.get(g["actor"], {"scores": {"favor": 0.0, "against": 0.0, "neutral": 1.0}})
                gold.append(g["stance"])
                out.append([a["scores"][k] for k in LABELS])
                cued.append(bool(a.get("cues")))
    return gold, np.array(out), np.array(cued)


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
    shipped, weight = actor_stance.actor_claim, actor_stance.CUE_WEIGHT
    scores, gold = {}, []
    try:
        actor_stance.CUE_WEIGHT = 0.0
        for name, claim in CLAIMS.items():
            actor_stance.actor_claim = claim
            gold, scores[name], _ = actor_scores(predictor, rows)
    finally:
        actor_stance.actor_claim, actor_stance.CUE_WEIGHT = shipped, weight
    for name in SWAPPED:
        scores[name] = scores[name][:, [1, 0, 2]]
        scores[f"supports+{name}"] = (scores["supports"] + scores[name]) / 2
    _, scores["shipped (cues)"], cued = actor_scores(predictor, rows)
    head = scores["supports"]
    scores["cues, else head"] = np.where(cued[:, None], scores["shipped (cues)"], head)
    for floor in (0.6, 0.8):  # without a cue, the head's side only when it is this sure
        sure = ~cued & (head.max(1) >= floor) & (head.argmax(1) != 2)
        scores[f"cues, else head >= {floor}"] = np.where(sure[:, None], head, scores["shipped (cues)"])
    print(f"{args.model} on {args.file} ({len(gold)} rows; cues decided {int(cued.sum())}; "
          f"CUE_WEIGHT {weight})")
    for name, s in scores.items():
        m = classification_metrics(gold, [LABELS[i] for i in s.argmax(1)], LABELS)
        per = " ".join(f"{k} {v['f1']:.2f}" for k, v in m["per_label"].items())
        print(f"{name:18s} macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}  ({per})")


if __name__ == "__main__":
    main()
