"""Classic NER baselines on CoNLL tokens: a CRF with simple token features, and a gazetteer of
the entities seen in training. :func:`fit_ner_baseline` keeps whichever scores higher on a fixed
held-out slice of the training sentences, then refits it on all of them."""
from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict

from khabar.training.scoring import ner_metrics

MAX_TRAIN_SENTENCES = 6000
HOLDOUT_FRACTION = 0.1
_TASHKEEL = re.compile("[\u064b-\u0652\u0640]")
_MAX_ENTITY_TOKENS = 6


def _norm(token: str) -> str:
    return _TASHKEEL.sub("", token)


def token_features(tokens: list[str], i: int) -> dict:
    """Features of token ``i``: its form, affixes, the Arabic article and its neighbours."""
    w = _norm(tokens[i])
    f = {"bias": 1.0, "w": w, "p2": w[:2], "p3": w[:3], "s2": w[-2:], "s3": w[-3:],
         "al": w.startswith("ال"), "wal": w.startswith("وال"), "digit": w.isdigit(),
         "alpha": w.isalpha(), "len": min(len(w), 8), "stem": re.sub("^(و|ف|ب|ل|ك)?ال", "", w)}
    for off in (-2, -1, 1, 2):
        j = i + off
        if 0 <= j < len(tokens):
            n = _norm(tokens[j])
            f[f"{off}:w"], f[f"{off}:s2"], f[f"{off}:al"] = n, n[-2:], n.startswith("ال")
        else:
            f[f"{off}:edge"] = True
    return f


class CrfTagger:
    """Linear-chain CRF (sklearn-crfsuite, L-BFGS with L1 + L2)."""

    name = "crf"

    def fit(self, examples: list) -> "CrfTagger":
        import sklearn_crfsuite

        self.crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.05, c2=0.05, max_iterations=80,
                                        all_possible_transitions=True)
        x = [[token_features(list(e.tokens), i) for i in range(len(e.tokens))] for e in examples]
        self.crf.fit(x, [list(e.tags) for e in examples])
        return self

    def predict(self, examples: list) -> list[list[str]]:
        x = [[token_features(list(e.tokens), i) for i in range(len(e.tokens))] for e in examples]
        return [list(tags) for tags in self.crf.predict(x)]


class GazetteerTagger:
    """Longest-match lookup of token sequences tagged as entities in training.

    A sequence is kept when it is tagged as an entity in at least half of its occurrences in the
    training text, with its most frequent type (so common words that are sometimes part of a name
    are not tagged everywhere).
    """

    name = "gazetteer"

    def fit(self, examples: list) -> "GazetteerTagger":
        from seqeval.metrics.sequence_labeling import get_entities

        types: dict[tuple, Counter] = defaultdict(Counter)
        for e in examples:
            toks = [_norm(t) for t in e.tokens]
            for kind, start, end in get_entities(list(e.tags)):
                if end - start < _MAX_ENTITY_TOKENS:
                    types[tuple(toks[start: end + 1])][kind] += 1
        seen: Counter = Counter()
        lengths = {len(k) for k in types}
        for e in examples:
            toks = [_norm(t) for t in e.tokens]
            for n in lengths:
                for i in range(len(toks) - n + 1):
                    key = tuple(toks[i: i + n])
                    if key in types:
                        seen[key] += 1
        self.entries = {k: c.most_common(1)[0][0] for k, c in types.items()
                        if sum(c.values()) * 2 >= seen[k]}
        self.max_len = max((len(k) for k in self.entries), default=0)
        return self

    def predict(self, examples: list) -> list[list[str]]:
        out = []
        for e in examples:
            toks = [_norm(t) for t in e.tokens]
            tags, i = ["O"] * len(toks), 0
            while i < len(toks):
                for n in range(min(self.max_len, len(toks) - i), 0, -1):
                    kind = self.entries.get(tuple(toks[i: i + n]))
                    if kind:
                        tags[i: i + n] = [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
                        i += n
                        break
                else:
                    i += 1
            out.append(tags)
        return out


def _held_out(example, seed: int) -> bool:
    digest = hashlib.sha1(f"{seed}:{example.id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT_FRACTION


def fit_ner_baseline(examples: list, seed: int = 13, log=print) -> tuple[object, dict]:
    """Pick CRF or gazetteer on a held-out slice of ``examples``; refit the winner on all.

    Returns the fitted tagger and ``{"chosen", "selection": {name: held-out micro-F1}}``.
    """
    held = [e for e in examples if _held_out(e, seed)]
    rest = [e for e in examples if not _held_out(e, seed)]
    if not held or not rest:  # too few sentences to hold any out: the CRF is the stronger kind
        return CrfTagger().fit(examples), {"chosen": "crf", "selection": {}}
    scores = {}
    for tagger in (GazetteerTagger(), CrfTagger()):
        pred = tagger.fit(rest).predict(held)
        scores[tagger.name] = ner_metrics([list(e.tags) for e in held], pred)["micro_f1"]
    chosen = max(scores, key=lambda k: (scores[k], k == "crf"))
    log(f"ner baseline: held-out micro-F1 {', '.join(f'{k} {v:.3f}' for k, v in scores.items())}; using {chosen}")
    tagger = (CrfTagger() if chosen == "crf" else GazetteerTagger()).fit(examples)
    return tagger, {"chosen": chosen, "selection": scores}
