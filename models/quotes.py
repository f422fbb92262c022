"""What an actor said: the quoted or reported speech inside its evidence clauses.

News gives a position in the speaker's own words more often than with a stance verb: «هذا القانون
سيعيد الأمل للمزارعين», or reported, قال الوزير إن النص سيمنح البلديات صلاحيات. Such speech is an
opinion about the target in the first person, which is what the stance head learnt from opinion
tweets (Mawqif), unlike a clause reporting a third party's position. This module finds it: the text
between quotation marks (« », “ ”, " ") inside a span, or else what follows a speech verb and the
particle that opens its content (قال ... إن، أكد أن، اعتبر أن).
"""
from __future__ import annotations

import re

from khabar.models.actors import fold

_QUOTED = re.compile(r"«([^»]+)»|“([^”]+)”|\"([^\"]+)\"")
# Speech verbs (past and present, with و/ف before them), then up to eight words (the speaker, a
# place, a time), then the particle that opens the content.
_SPEECH_VERBS = ("قال", "يقول", "تقول", "قالت", "أضاف", "أضافت", "يضيف", "أكد", "أكدت", "يؤكد", "تؤكد",
                 "اعتبر", "اعتبرت", "يعتبر", "تعتبر", "رأى", "رأت", "يرى", "ترى", "شدد", "شددت", "صرح",
                 "صرحت", "وصف", "وصفت", "تابع", "تابعت", "ختم", "ختمت")
_PARTICLES = ("إن", "أن", "بأن", "إنه", "إنها", "أنه", "أنها", "إنهم", "أنهم")
# Matched on folded text (models.actors.fold, as stance_cues matches): many sites and most social
# text drop the hamza (اكد، ان) or write final ى as ي. Folding keeps the length, so offsets hold.
_REPORTED = re.compile(
    r"(?<![\u0621-\u064A])[وف]?(?:" + "|".join(map(fold, _SPEECH_VERBS)) + r")(?![\u0621-\u064A])"
    r"(?:\s+\S+){0,8}?\s+(?:" + "|".join(map(fold, _PARTICLES)) + r")\s+")
MIN_WORDS = 3


def speech_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of ``text`` inside ``spans`` that hold quoted or reported speech (see the module
    doc), at least :data:`MIN_WORDS` words each, in reading order. Offsets are into ``text``."""
    out = []
    for s, e in spans:
        chunk = text[s:e]
        quoted = [(s + m.start(g), s + m.end(g)) for m in _QUOTED.finditer(chunk)
                  for g in (1, 2, 3) if m.group(g) is not None]
        if not quoted:
            m = _REPORTED.search(fold(chunk))
            quoted = [(s + m.end(), e)] if m else []
        out += [q for q in quoted if len(text[q[0]:q[1]].split()) >= MIN_WORDS]
    return sorted(set(out))
