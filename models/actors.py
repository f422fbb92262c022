"""Who is in an article: actors, their mentions grouped, and the clauses that carry their words.

An actor is a name from the user's list or a person / organisation the NER head found. Its
mentions are every place the text names it: the full name (with Arabic proclitics such as و، ب،
ل، لل attached), its short forms (a person's surname, the head noun of "الفصائل المسلحة"), and
generic back-references ("الحزب", "النادي", "الوزارة") resolved to the nearest actor before
them whose name starts with that noun. Matching folds alef, ya and ta-marbuta variants; offsets
always index the text the user sent.

The evidence for an actor's stance is the clauses that mention it (sentences split further at
"بينما", "فيما", "لكن", "في المقابل"...: one sentence often reports two sides), plus a clause right
after that mentions no actor and does not open with a turn ("بينما أيّده...": another side speaks):
it usually goes on quoting the same speaker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from khabar.models.normalize import Normalized, normalize, word_spans

_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"})
_PROCLITICS = ("", "و", "ف", "ب", "ل", "ك", "وب", "ول", "فب", "فل", "وك")
# Nouns that head an organisation's name and are used alone, with the article, to refer back to it.
_HEAD_NOUNS = ("حزب", "نادي", "جمعية", "اتحاد", "رابطة", "غرفة", "مجلس", "وزارة", "هيئة", "حركة", "كتلة",
               "نقابة", "منظمة", "بنك", "مصرف", "شركة", "جامعة", "صندوق", "بعثة", "منصة", "صحيفة", "قناة",
               "لجنة", "مؤسسة", "مكتب", "جبهة", "تحالف", "ائتلاف", "وزير")
# Clause boundaries inside a sentence where the report usually switches to another side.
_TURNS = r"(?:بينما|فيما|لكن|غير أن|في المقابل|أما|في حين)"
_CLAUSE_BREAK = re.compile(rf"[.!?؟\n]+|[،,]?\s*(?=\b{_TURNS}\b)")
_TURN_START = re.compile(rf"{_TURNS}\b")
MIN_SHORT_FORM = 3


@dataclass
class Actor:
    """One actor of an article: its display name, where it came from, and its mentions as
    ``(start, end)`` offsets into the original text, in reading order."""

    name: str
    source: str  # "user", "PERS" or "ORG"
    mentions: list[tuple[int, int]] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Letter variants that spelling mixes freely (أ/إ/آ/ا, ى/ي, ة/ه) made one; length kept."""
    return text.translate(_FOLD)


_FOLDED_HEADS = {fold(h) for h in _HEAD_NOUNS}


def _words(phrase: str) -> list[str]:
    norm = normalize(phrase).text
    return [fold(norm[s:e]) for s, e in word_spans(norm)]


def _head(name: str) -> str | None:
    """The generic back-reference of an organisation name ("حزب التجمع" -> "الحزب"), if any."""
    words = _words(name)
    if not words:
        return None
    first = words[0]
    bare = first[2:] if first.startswith("ال") else first
    return "ال" + bare if fold(bare) in _FOLDED_HEADS else None


def short_forms(name: str, source: str) -> list[str]:
    """Forms shorter than the full name that still name the actor: a person's surname, or the
    first word of a multiword group noun ("الفصائل" for "الفصائل المسلحة")."""
    words = _words(name)
    if len(words) < 2:
        return []
    if _head(name):
        return []  # organisations are referred to by their head noun, resolved by position
    if words[0].startswith("ال"):
        return [words[0]] if len(words[0]) >= 5 else []
    if source in ("PERS", "user") and len(words[-1]) >= MIN_SHORT_FORM:
        return [words[-1]]
    return []


class MentionFinder:
    """Finds phrases in one article, word by word, with proclitics allowed on the first word."""

    def __init__(self, text: str) -> None:
        self.norm: Normalized = normalize(text)
        self.spans = word_spans(self.norm.text)
        self.words = [fold(self.norm.text[s:e]) for s, e in self.spans]

    def find(self, phrase_words: list[str]) -> list[tuple[int, int]]:
        """Original-text spans of every occurrence of the (folded) phrase words."""
        if not phrase_words:
            return []
        k, out = len(phrase_words), []
        for i in range(len(self.words) - k + 1):
            prefix = _proclitic(self.words[i], phrase_words[0])
            if prefix is None or self.words[i + 1: i + k] != phrase_words[1:]:
                continue
            out.append(self.norm.span_to_original(self.spans[i][0] + prefix, self.spans[i + k - 1][1]))
        return out


def _proclitic(word: str, first: str) -> int | None:
    """Length of the proclitic in front of ``first`` in ``word`` (0: none), or None if ``word`` is
    not ``first`` with one. The article's alef drops after lam: "للحكومة" is ل + "لحكومة"."""
    for p in _PROCLITICS:
        if word == p + first:
            return len(p)
        if first.startswith("ال") and p.endswith("ل") and word == p + first[1:]:
            return len(p)
    return None


def find_actors(text: str, user_actors: list[str], entities: list[dict]) -> list[Actor]:
    """The actors of ``text``: the user's (those found in it) and the PERS / ORG entities not
    already one of them, with their mentions grouped (see the module doc)."""
    finder = MentionFinder(text)
    actors: list[Actor] = []
    taken: list[tuple[int, int]] = []

    def add(name: str, source: str) -> Actor | None:
        full = finder.find(_words(name))
        if not full:
            return None
        actor = Actor(name, source, [], [name])
        _claim(actor, full, taken)
        for form in short_forms(name, source):
            _claim(actor, finder.find([form]), taken)
            actor.forms.append(form)
        return actor

    for name in user_actors:
        actor = add(name, "user")
        if actor is not None and actor.mentions:
            actors.append(actor)
    for ent in sorted(entities, key=lambda e: e["start"]):
        if ent["label"] not in ("PERS", "ORG") or _overlaps((ent["start"], ent["end"]), taken):
            continue
        same = next((a for a in actors if fold(ent["text"]) in {fold(f) for f in a.forms}), None)
        if same is not None:
            continue
        actor = add(ent["text"], ent["label"])
        if actor is not None and actor.mentions:
            actors.append(actor)
    _resolve_heads(finder, actors, taken)
    for actor in actors:
        actor.mentions.sort()
    return actors


def _claim(actor: Actor, spans: list[tuple[int, int]], taken: list[tuple[int, int]]) -> None:
    for span in spans:
        if not _overlaps(span, taken):
            actor.mentions.append(span)
            taken.append(span)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def _resolve_heads(finder: MentionFinder, actors: list[Actor], taken: list[tuple[int, int]]) -> None:
    """Give each standalone "الحزب" / "النادي"... to the nearest actor before it with that head."""
    heads = {}
    for actor in actors:
        head = _head(actor.name)
        if head:
            heads.setdefault(head, []).append(actor)
    for head, owners in heads.items():
        for span in finder.find([head]):
            if _overlaps(span, taken):
                continue
            before = [(max(s for s, _ in a.mentions if s < span[0]), a) for a in owners
                      if any(s < span[0] for s, _ in a.mentions)]
            if before:
                max(before, key=lambda x: x[0])[1].mentions.append(span)
                taken.append(span)


def clauses(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the clauses of ``text`` (sentences, split again where a report turns to
    another side), whitespace trimmed, empty ones dropped."""
    out, pos = [], 0
    for m in _CLAUSE_BREAK.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    trimmed = []
    for s, e in out:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e))
    return trimmed


def evidence(text: str, actor: Actor, others: list[Actor]) -> list[tuple[int, int]]:
    """The clauses that carry ``actor``'s words (see the module doc), in reading order."""
    spans = clauses(text)
    inside = lambda c, a: any(c[0] <= s and e <= c[1] for s, e in a.mentions)  # noqa: E731
    out = []
    for i, c in enumerate(spans):
        if inside(c, actor):
            out.append(c)
            nxt = spans[i + 1] if i + 1 < len(spans) else None
            # The clause after goes on quoting the same speaker, unless it turns to another side.
            if (nxt is not None and not any(inside(nxt, a) for a in [actor, *others])
                    and not _TURN_START.match(text, nxt[0])):
                out.append(nxt)
    return sorted(set(out))
