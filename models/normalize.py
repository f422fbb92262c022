"""Arabic text normalization as AraBERT v0.2 does it, with a map back to the original string.

`normalize(text).text` equals `ArabertPreprocessor("bert-base-arabertv02").preprocess(text)`
(arabert 1.0.1, `_preprocess_v2`): HTML entities unescaped, tashkeel and tatweel stripped, URLs /
emails / mentions replaced by `[رابط]` / `[بريد]` / `[مستخدم]`, HTML tags removed, Hindi digits
mapped to ASCII, runs of 3+ equal non-digits cut to 2, spaces put around punctuation and between
digits and Arabic letters, `/` turned into `-`, characters outside its alphabet (emoji, Persian and
accented letters...) dropped, whitespace collapsed. One deliberate difference: invisible format
characters (`_FORMAT_CHARS`) are deleted instead of splitting the word they sit in.

Each step runs arabert's own regexes on the intermediate string while two parallel lists carry,
for every intermediate character, the `[start, end)` span of `original` it came from. Matches are
rare except for punctuation, so the map costs little more than the regexes themselves.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from operator import itemgetter

# --- arabert 1.0.1 patterns (preprocess.py), v02 path. Rewritten ones say why. ---------------

# html.unescape's own entity pattern (stdlib html._charref); each match is unescaped on its own,
# which gives exactly what html.unescape gives for the whole string.
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")

# Deviation from arabert: these invisible characters (soft hyphen, joiners, direction marks,
# embeddings/overrides/isolates, word joiner, BOM) sit *inside* words in real news text (e.g. an
# RLM between a word and its digits). arabert turns them into spaces and so splits the word; we
# delete them, so the model sees the word the reader sees. ZERO WIDTH SPACE (U+200B) is a word
# separator by intent and is left to arabert (it becomes a space), as are NUL and other control
# characters (outside arabert's alphabet: they become spaces).
_FORMAT_CHARS = re.compile("[\u00ad\u061c\u200c-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]+")
# pyarabic.araby.strip_tashkeel (TASHKEEL: tanween, harakat, sukun, shadda) and strip_tatweel.
_TASHKEEL = re.compile("[\u064b-\u0652]+")
_TATWEEL = re.compile("\u0640+")

# arabert's replacements " [رابط] " etc., as `_sub` templates
_URL_PLACEHOLDER = (" ", "[رابط]", " ")
_EMAIL_PLACEHOLDER = (" ", "[بريد]", " ")
_MENTION_PLACEHOLDER = (" ", "[مستخدم]", " ")

# (pattern, a substring or pattern every match contains: the regex is skipped when it is absent).
# arabert's second URL regex, r"@(https?|ftp)://(-\.)?([^\s/?\.#-]+\.?)+(/[^\s]*)?$@iS", is left
# out: it needs an "@" right after "$", so it never matches, while its nested quantifier backtracks
# exponentially on "@http://" followed by a long word.
_URL_REGEXES = (
    (re.compile(r"(http(s)?:\/\/.)?(www\.)?[-a-zA-Z0-9@:%._\+~#=]{2,256}\.[a-z]{2,6}\b([-a-zA-Z0-9@:%_\+.~#?&//=]*)"),
     re.compile(r"\.[a-z]{2}")),
    (re.compile(r"http[s]?://[a-zA-Z0-9_\-./~\?=%&]+"), "://"),
    (re.compile(r"www[a-zA-Z0-9_\-?=%&/.~]+"), "www"),
    # arabert: r"[a-zA-Z]+\.com". Starting only at the first letter of a run (or right after the
    # previous match, which ends inside a run when ".com" is followed by letters) finds the same
    # matches without rescanning a long letter run from each of its letters (quadratic). The
    # lookbehinds come after the first letter so that the regex engine can skip to letters fast.
    (re.compile(r"[a-zA-Z](?:(?<![a-zA-Z][a-zA-Z])|(?<=\.com[a-zA-Z]))[a-zA-Z]*\.com"), ".com"),
    (re.compile(r"(?=http)[^\s]+"), "http"),
    (re.compile(r"(?=www)[^\s]+"), "www"),
    (re.compile(r"://"), "://"),
)
# arabert: r"[\w-]+@([\w-]+\.)+[\w-]+" and r"\S+@\S+". A match always starts at the start of a run
# (of [\w-] / of non-space) and ends at its end, so anchoring the start with a lookbehind keeps the
# matches and avoids quadratic rescans of long runs.
_EMAIL_REGEXES = (
    re.compile(r"(?<![\w-])[\w-]+@([\w-]+\.)+[\w-]+"),
    re.compile(r"(?<!\S)\S+@\S+"),
)
_MENTION = re.compile(r"@[\w\d]+")
_HTML_BR = re.compile("<br />")
_HTML_TAG = re.compile("</?[^>]+>")
_HINDI_DIGITS = tuple(zip("٠١٢٣٤٥٦٧٨٩", "0123456789"))
_REPEATED = re.compile(r"(\D)\1{2,}", re.DOTALL)
# arabert puts spaces around every character outside this class; whitespace is left out here
# because spaces around whitespace vanish when whitespace is collapsed (and it is the most
# frequent match).
_SPACED = re.compile("([^0-9\u0621-\u063a\u0641-\u064a\u0660-\u0669a-zA-Z\\[\\]\\s])")
_AR_LETTERS = "\u0621-\u063a\u0641-\u064a\u0660-\u066c"
# arabert: r"(\d+)([L]+)" then r"([L]+)(\d+)". Matches end where a run ends, so the start can be
# anchored at a run start (Hindi digits are already ASCII here, so \d and L do not overlap).
_DIGIT_LETTER = re.compile(rf"(\d(?<!\d\d)\d*)([{_AR_LETTERS}]+)")
_LETTER_DIGIT = re.compile(rf"(?<![{_AR_LETTERS}])([{_AR_LETTERS}]+)(\d+)")
_LETTER_THEN_DIGIT = re.compile(rf"\d(?<=[{_AR_LETTERS}]\d)")  # cheap test: can _LETTER_DIGIT match?
# REJECTED_CHARS_REGEX (second-generation models, emojis not kept): replaced one for one by " ".
_REJECTED = re.compile(
    r"[^0-9\u0621-\u063A\u0640-\u066C\u0671-\u0674a-zA-Z\[\]!\"#\$%\'\(\)\*\+,\.:;\-<=·>?@\[\\\]\^_ـ`{\|}~—٪’،؟`୍“؛”ۚ»؛\s+«–…‘]"
)
_WORD = re.compile(r"\S+")  # \S is exactly what str.split() splits on (str.isspace)

_Buf = tuple[str, list[int], list[int]]  # text, start and end in `original` of each character


@dataclass(frozen=True)
class Normalized:
    """A normalized string and, per character, where it came from in `original`.

    `offsets[i]` is the index in `original` of the character that produced `text[i]`;
    `ends[i]` is the end (exclusive) of the stretch of `original` it stands for (a placeholder
    stands for a whole URL, a kept letter also for the tashkeel that followed it). A space
    between two words stands for the first whitespace character between them (or, where the
    words touched in `original`, for one of its neighbours).
    """

    original: str
    text: str
    offsets: tuple[int, ...] = field(repr=False)
    ends: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ends is None:
            object.__setattr__(self, "ends", tuple(o + 1 for o in self.offsets))
        if not len(self.text) == len(self.offsets) == len(self.ends):
            raise ValueError("Normalized: text, offsets and ends must have the same length")

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map `text[start:end]` to `(s, e)` such that `original[s:e]` is its source text.

        Spaces at either end of the span and whitespace at either end of the source are left out.
        A span with no characters but spaces maps to an empty span at its position.
        """
        n = len(self.text)
        if not 0 <= start <= end <= n:
            raise ValueError(f"span [{start}, {end}) is outside the normalized text (length {n})")
        text = self.text
        while start < end and text[start] == " ":
            start += 1
        while end > start and text[end - 1] == " ":
            end -= 1
        if start == end:
            pos = self.offsets[start] if start < n else len(self.original)
            return pos, pos
        s = min(self.offsets[start:end])
        e = max(self.ends[start:end])
        original = self.original
        while s < e and original[s].isspace():
            s += 1
        while e > s and original[e - 1].isspace():
            e -= 1
        return s, e


def normalize(text: str) -> Normalized:
    """Normalize `text` as AraBERT v0.2's preprocessor does, keeping a map to `text`."""
    if not isinstance(text, str):
        raise TypeError(f"normalize() takes a str, got {type(text).__name__}")
    buf: _Buf = (text, list(range(len(text))), list(range(1, len(text) + 1)))
    if "&" in text:
        buf = _unescape(buf)
    buf = _delete(buf, _FORMAT_CHARS, absorb=False)
    # A stripped mark or tatweel belongs to the letter before it: an entity ending in a vowelled
    # letter is returned with its vowel.
    buf = _delete(buf, _TASHKEEL, absorb=True)
    buf = _delete(buf, _TATWEEL, absorb=True)
    for regex, needle in _URL_REGEXES:
        if needle in buf[0] if needle.__class__ is str else needle.search(buf[0]):
            buf = _sub(buf, regex, _URL_PLACEHOLDER)
    if "@" in buf[0]:
        for regex in _EMAIL_REGEXES:
            buf = _sub(buf, regex, _EMAIL_PLACEHOLDER)
        buf = _sub(buf, _MENTION, _MENTION_PLACEHOLDER)
    if "<" in buf[0]:
        buf = _sub(buf, _HTML_BR, (" ",))
        last_gt = buf[0].rfind(">")
        if last_gt > 0:
            # No tag can end after the last ">": stopping there keeps "<<<<..." linear.
            buf = _sub(buf, _HTML_TAG, (" ",), endpos=last_gt + 1)
    text_now = buf[0]
    for hindi, ascii_digit in _HINDI_DIGITS:  # str.translate is several times slower on Arabic
        if hindi in text_now:
            text_now = text_now.replace(hindi, ascii_digit)
    buf = (text_now, buf[1], buf[2])
    buf = _cut_repeats(buf)
    buf = _space_around(buf)
    buf = _sub(buf, _DIGIT_LETTER, (" ", 1, " ", 2, " "))
    if _LETTER_THEN_DIGIT.search(buf[0]):
        buf = _sub(buf, _LETTER_DIGIT, (" ", 1, " ", 2, " "))
    # "/" -> "-" and rejected characters -> " " are one-for-one: the map is unchanged. arabert then
    # deletes U+FE0F, which it has already turned into a space here.
    text_now = _REJECTED.sub(" ", buf[0].replace("/", "-"))
    return _collapse_spaces(text, text_now, buf[1], buf[2])


def word_spans(text: str) -> list[tuple[int, int]]:
    """Return the `[start, end)` spans of the whitespace-separated words of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def _sub(buf: _Buf, regex: re.Pattern, template: tuple, endpos: int | None = None) -> _Buf:
    """`regex.sub` whose replacement is `template`: group numbers, " " and placeholders.

    Characters copied from a group keep their source; a placeholder stands for the whole match;
    an inserted space stands for nothing (an empty span where it sits), so it never widens a span.
    """
    text, starts, ends = buf
    matches = regex.finditer(text) if endpos is None else regex.finditer(text, 0, endpos)
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for m in matches:
        a, b = m.span()
        if a > pos:
            out.append(text[pos:a])
            new_starts += starts[pos:a]
            new_ends += ends[pos:a]
        here = starts[a]
        for piece in template:
            if piece.__class__ is int:
                ga, gb = m.span(piece)
                out.append(text[ga:gb])
                new_starts += starts[ga:gb]
                new_ends += ends[ga:gb]
                here = ends[gb - 1]
            elif piece == " ":
                out.append(piece)
                new_starts.append(here)
                new_ends.append(here)
            else:
                out.append(piece)
                new_starts += [starts[a]] * len(piece)
                new_ends += [ends[b - 1]] * len(piece)
                here = ends[b - 1]
        pos = b
    if not out:
        return buf
    out.append(text[pos:])
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return "".join(out), new_starts, new_ends


def _delete(buf: _Buf, regex: re.Pattern, absorb: bool) -> _Buf:
    """Delete every match; with `absorb`, the character before a match takes over its source."""
    text, starts, ends = buf
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for m in regex.finditer(text):
        a, b = m.span()
        if a > pos:
            out.append(text[pos:a])
            new_starts += starts[pos:a]
            new_ends += ends[pos:a]
        if absorb and new_ends:
            new_ends[-1] = ends[b - 1]
        pos = b
    if pos == 0:  # no match (every match is non-empty)
        return buf
    out.append(text[pos:])
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return "".join(out), new_starts, new_ends


def _space_around(buf: _Buf) -> _Buf:
    """arabert's `([^...])` -> ` \\1 `, keeping the map."""
    text, starts, ends = buf
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for m in _SPACED.finditer(text):
        a = m.start()
        out.append(text[pos:a])
        new_starts += starts[pos:a]
        new_ends += ends[pos:a]
        out.append(f" {text[a]} ")
        s, e = starts[a], ends[a]
        new_starts += (s, s, e)  # the spaces are empty spans on either side of the character
        new_ends += (s, e, e)
        pos = a + 1
    if not out:
        return buf
    out.append(text[pos:])
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return "".join(out), new_starts, new_ends


def _unescape(buf: _Buf) -> _Buf:
    """`html.unescape` with the map: an entity's characters stand for the entity, except a tail
    copied through unchanged ("&ampxyz" -> "&xyz": "xyz" keeps its own source)."""
    text, starts, ends = buf
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for m in _CHARREF.finditer(text):
        ref = m.group()
        rep = html.unescape(ref)
        if rep == ref:
            continue
        a, b = m.span()
        tail = 0
        while tail < len(rep) - 1 and rep[-1 - tail] == ref[-1 - tail]:
            tail += 1
        out.append(text[pos:a])
        new_starts += starts[pos:a]
        new_ends += ends[pos:a]
        out.append(rep)
        head = len(rep) - tail
        new_starts += [starts[a]] * head
        new_ends += [ends[b - 1 - tail]] * head
        new_starts += starts[b - tail : b]
        new_ends += ends[b - tail : b]
        pos = b
    if not out:
        return buf
    out.append(text[pos:])
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return "".join(out), new_starts, new_ends


def _cut_repeats(buf: _Buf) -> _Buf:
    """arabert's `(\\D)\\1{2,}` -> `\\1\\1`, keeping the map."""
    text, starts, ends = buf
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for m in _REPEATED.finditer(text):
        a, b = m.span()
        out.append(text[pos:a])
        new_starts += starts[pos:a]
        new_ends += ends[pos:a]
        char = text[a]
        out.append(char * 2)
        # A letter run stays one word and is returned whole. A punctuation run becomes two words
        # ("!!!!" -> "! !"): they stand for its first and last marks, so either one's span holds
        # exactly one mark.
        new_starts += (starts[a], starts[b - 1] if _SPACED.match(char) else starts[a + 1])
        new_ends += (ends[a], ends[b - 1])
        pos = b
    if not out:
        return buf
    out.append(text[pos:])
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return "".join(out), new_starts, new_ends


def _collapse_spaces(original: str, text: str, starts: list[int], ends: list[int]) -> Normalized:
    """`" ".join(text.split())`; a joining space keeps the source of the first whitespace
    character it replaces (an original space, or the neighbour of an inserted one)."""
    keep: list[int] = []
    extend = keep.extend
    for m in _WORD.finditer(text):
        a, b = m.span()
        extend(range(a, b + 1))  # the word and the whitespace character after it
    if not keep:
        return Normalized(original, "", (), ())
    keep.pop()  # no space after the last word
    if len(keep) == 1:
        return Normalized(original, text.strip(), (starts[keep[0]],), (ends[keep[0]],))
    gather = itemgetter(*keep)
    return Normalized(original, " ".join(text.split()), gather(starts), gather(ends))
