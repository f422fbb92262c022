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
(:data:`CUE_WEIGHT` 1.0) the cues decide, and the head is not run over every (target, actor)
pair: that second encoder pass could not change a label and cost most of the actor latency.

Where the cues state no side, the actor's own words can (:mod:`khabar.models.quotes`: «...», or
what follows قال ... إن): the head reads them against the target itself, as it reads an opinion
tweet, and its side is taken when it is at least :data:`SPEECH_FLOOR` sure; those words are then
returned as the actor's ``cues``. Measured (README, "Actor stance"): 0.828 -> 0.749 on
``actors.jsonl``, whose misses the cue lists were fitted to, 0.502 -> 0.600 and 0.515 -> 0.533 on
the two files written blind to the method. With session 6's cue additions (votes, undoing words,
protest and worry words): 0.749 / 0.579 / 0.623 on those three and 0.777 on a third file written
blind in newsroom style (0.722 with session 5's cues).
"""
from __future__ import annotations

from typing import Callable

from khabar.models.actors import evidence, find_actors
from khabar.models.quotes import speech_spans
from khabar.models.stance_cues import cue_side

ACTOR_LABELS = ("favor", "against", "neutral")
# Share of an actor's scores given to the side its cues add up to (neutral without one); above 0.5
# the cues decide, at 1.0 the head is not run at all and the scores are the cues' own
# (:func:`cue_scores`). 0 lets the stance head decide alone (benchmarks/actor_claims.py measures
# both).
CUE_WEIGHT = 1.0
# An actor whose evidence has no cue but holds its own quoted or reported words
# (:mod:`khabar.models.quotes`): the stance head reads those words against the target itself, as it
# reads an opinion tweet, and its side is taken when it is at least SPEECH_FLOOR sure.
READ_SPEECH = True
SPEECH_FLOOR = 0.6


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


def _read_speech(prepared: list, jobs: list, decided: list,
                 score_claims: Callable) -> dict[int, tuple[dict, list[tuple[int, int]]]]:
    """Scores from the stance head, with the spans it read, for the jobs whose cues state no side
    but whose evidence holds the actor's own words, read against the target; only those where the
    head takes a side at least :data:`SPEECH_FLOOR` sure."""
    asked, pairs, spans = [], [], []
    for k, ((i, entry, _, clauses), (side, _)) in enumerate(zip(jobs, decided)):
        if side is None:
            text = prepared[i].norm.original
            spoken = speech_spans(text, clauses)
            if spoken:
                asked.append(k)
                spans.append(spoken)
                pairs.append((" ".join(text[s:e] for s, e in spoken), entry["target"]))
    out = {}
    for k, spoken, raw in zip(asked, spans, score_claims(pairs) if pairs else []):
        if raw is None:
            continue
        scores = _fold_scores(raw)
        side = max(ACTOR_LABELS, key=scores.get)
        if side != "neutral" and scores[side] >= SPEECH_FLOOR:
            out[k] = (scores, spoken)
    return out


def label_actors(prepared: list, results: list[dict],
                 score_claims: Callable[[list[tuple[str, str]]], list[dict | None]]) -> None:
    """Add ``actors`` to every stance entry of the requests that asked for them (in place).

    ``prepared`` are the predictor's prepared requests (``norm``, ``actors``, ``hide_entities``);
    ``score_claims`` reads (evidence text, claim) pairs with the stance head and returns each
    pair's four stance scores (None when nothing could be read); it is called over every actor's
    evidence only when :data:`CUE_WEIGHT` is under 1, and otherwise over the speech of actors
    without a cue (:data:`READ_SPEECH`). Taking it as an argument keeps this module below the
    predictor that calls it."""
    jobs = []
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
        if p.hide_entities:
            results[i]["entities"] = []
    if not jobs:
        return
    # The head reads every actor's evidence only where it can change a label (CUE_WEIGHT < 1).
    scored = (score_claims([(" ".join(prepared[i].norm.original[s:e] for s, e in clauses),
                             actor_claim(actor.name, entry["target"])) for i, entry, actor, clauses in jobs])
              if CUE_WEIGHT < 1 else [None] * len(jobs))
    decided = [cue_side(prepared[i].norm.original, clauses, entry["target"]) if CUE_WEIGHT else (None, [])
               for i, entry, _, clauses in jobs]
    speech = _read_speech(prepared, jobs, decided, score_claims) if READ_SPEECH and CUE_WEIGHT >= 1 else {}
    for n, ((i, entry, actor, clauses), raw, (side, cues)) in enumerate(zip(jobs, scored, decided)):
        text = prepared[i].norm.original
        decisive = [(c.start, c.end) for c in cues if side is not None and c.side == side]
        if n in speech:
            scores, decisive = speech[n]
        elif CUE_WEIGHT >= 1:
            scores = cue_scores(side, cues)
        else:
            scores = _fold_scores(raw) if raw is not None else {"neutral": 1.0, "favor": 0.0, "against": 0.0}
        if 0 < CUE_WEIGHT < 1:
            # No cue: the actor is mentioned without a stated side, so neutral, not guessed.
            cue_label = side or "neutral"
            scores = {k: (1 - CUE_WEIGHT) * v + (CUE_WEIGHT if k == cue_label else 0.0) for k, v in scores.items()}
        label = max(ACTOR_LABELS, key=lambda k: scores[k])
        entry["actors"].append({
            "actor": actor.name, "source": actor.source, "label": label, "score": float(scores[label]),
            "scores": {k: float(scores[k]) for k in ACTOR_LABELS},
            "mentions": [{"text": text[s:e], "start": s, "end": e} for s, e in actor.mentions],
            "evidence": [{"text": text[s:e], "start": s, "end": e} for s, e in clauses],
            "cues": [{"text": text[s:e], "start": s, "end": e} for s, e in decisive],
        })
