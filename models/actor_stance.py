"""Each actor's stance toward each target, with the sentences it rests on.

For every (article, target), the actors are found and their mentions grouped
(:mod:`khabar.models.actors`), and each actor's evidence clauses are read for stance cues
(:mod:`khabar.models.stance_cues`: رحّب، أيّد for, رفض، ندّد، انتقد against; a verb enacting the
target, قرر، وقّع، for). The side the cues add up to is the actor's label, ``neutral`` when there
is none: an actor only mentioned takes no side. The cue words are returned with the label.

The same stance head the article-level stance uses can also read each actor's evidence against
the claim "<actor> supports <target>" (:func:`actor_claim`; pair classification, hybrid blend
included, ``unrelated`` folded into ``neutral``). Measured on the sample actor files (README,
"Actor stance"; ``python -m benchmarks.actor_claims``), the head, never trained on clauses reporting
a third party's position, was right less often than the cues, and letting it decide actors
without a cue cost more neutral actors than it won favour or against. So by default
(:data:`CUE_WEIGHT` 1.0) the cues decide alone and the head is not run: a second encoder pass
over every (target, actor) pair that could not change a label cost most of the actor latency.
"""
from __future__ import annotations

from typing import Callable

from khabar.models.actors import evidence, find_actors
from khabar.models.stance_cues import cue_side

ACTOR_LABELS = ("favor", "against", "neutral")
# Share of an actor's scores given to the side its cues add up to (neutral without one); above 0.5
# the cues decide, at 1.0 the head is not run at all and the scores are the cues' own
# (:func:`cue_scores`). 0 lets the stance head decide alone (benchmarks/actor_claims.py measures
# both).
CUE_WEIGHT = 1.0


def actor_claim(actor: str, target: str) -> str:
    """The claim an actor's evidence is read against by the pair head: "<actor> supports <target>".

    The head learnt claim/text agreement from ANS; "agrees with 'X supports T'" is X's favour and
    "disagrees" X's opposition. Other forms were measured against it (README, "Actor stance";
    `python -m benchmarks.actor_claims`).
    """
    return f"{actor} يؤيد {target}"


def _fold_scores(scores: dict) -> dict:
    return {"favor": scores.get("favor", 0.0), "against": scores.get("against", 0.0),
            "neutral": scores.get("neutral", 0.0) + scores.get("unrelated", 0.0)}


def cue_scores(side: str | None, cues: list) -> dict:
    """Scores from cues alone: each side's share of the cue weight when they add up to a side,
    ``neutral`` 1.0 when they do not (no cue, or as many each way). The decided side always
    scores highest."""
    if side is None:
        return {"favor": 0.0, "against": 0.0, "neutral": 1.0}
    weight = {k: sum(c.weight for c in cues if c.side == k) for k in ("favor", "against")}
    total = weight["favor"] + weight["against"]
    return {"favor": weight["favor"] / total, "against": weight["against"] / total, "neutral": 0.0}


def label_actors(prepared: list, results: list[dict],
                 score_claims: Callable[[list[tuple[str, str]]], list[dict | None]]) -> None:
    """Add ``actors`` to every stance entry of the requests that asked for them (in place).

    ``prepared`` are the predictor's prepared requests (``norm``, ``actors``, ``hide_entities``);
    ``score_claims`` reads (evidence text, claim) pairs with the stance head and returns each
    pair's four stance scores (None when nothing could be read); it is called only when
    :data:`CUE_WEIGHT` is under 1. Taking it as an argument keeps this module below the
    predictor that calls it."""
    jobs, pairs = [], []
    for i, p in enumerate(prepared):
        if p.actors is None:
            continue
        text = p.norm.original
        actors = find_actors(text, p.actors, results[i]["entities"]) if p.norm.text.strip() else []
        for entry in results[i]["stance"]:
            entry["actors"] = []
            for actor in actors:
                clauses = evidence(text, actor, [a for a in actors if a is not actor])
                jobs.append((i, entry, actor, clauses))
                snippet = " ".join(text[s:e] for s, e in clauses)
                pairs.append((snippet, actor_claim(actor.name, entry["target"])))
        if p.hide_entities:
            results[i]["entities"] = []
    if not pairs:
        return
    scored = score_claims(pairs) if CUE_WEIGHT < 1 else [None] * len(pairs)
    for (i, entry, actor, clauses), raw in zip(jobs, scored):
        text = prepared[i].norm.original
        side, cues = cue_side(text, clauses, entry["target"]) if CUE_WEIGHT else (None, [])
        if CUE_WEIGHT >= 1:
            scores = cue_scores(side, cues)
        else:
            scores = _fold_scores(raw) if raw is not None else {"neutral": 1.0, "favor": 0.0, "against": 0.0}
        if 0 < CUE_WEIGHT < 1:
            # No cue: the actor is mentioned without a stated side, so neutral, not guessed.
            decided = side or "neutral"
            scores = {k: (1 - CUE_WEIGHT) * v + (CUE_WEIGHT if k == decided else 0.0) for k, v in scores.items()}
        label = max(ACTOR_LABELS, key=lambda k: scores[k])
        entry["actors"].append({
            "actor": actor.name, "source": actor.source, "label": label, "score": float(scores[label]),
            "scores": {k: float(scores[k]) for k in ACTOR_LABELS},
            "mentions": [{"text": text[s:e], "start": s, "end": e} for s, e in actor.mentions],
            "evidence": [{"text": text[s:e], "start": s, "end": e} for s, e in clauses],
            "cues": [{"text": text[c.start:c.end], "start": c.start, "end": c.end}
                     for c in cues if side is not None and c.side == side],
        })
