"""Label sets shared by the readers and the model heads: unified stance labels, BIO entity tags.

Datasets name the same stance differently (ANS: agree/disagree/other, Baly: discuss/unrelated,
Mawqif: favor/against/none); one model predicts one set, so readers map every dataset onto
:data:`STANCE_LABELS` through a label map. Entities use BIO tags over :data:`NER_TYPES`.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

STANCE_LABELS: tuple[str, ...] = ("favor", "against", "neutral", "unrelated")

# Keys are matched case-insensitively by map_label. "discuss" (reports without taking a side) and
# "other"/"none" (no stance expressed) are all "neutral": the text is about the target but takes
# no side, which is what a user asking "what does this article say about X" needs to know.
DEFAULT_STANCE_MAP: dict[str, str] = {
    "agree": "favor",
    "favor": "favor",
    "disagree": "against",
    "against": "against",
    "discuss": "neutral",
    "other": "neutral",
    "none": "neutral",
    "neutral": "neutral",
    "unrelated": "unrelated",
}

NER_TYPES: tuple[str, ...] = ("PERS", "LOC", "ORG", "MISC")


class LabelError(ValueError):
    """A label that is not in the allowed set (readers add the file, line and field)."""


def map_label(
    raw: str,
    label_map: Mapping[str, str] | None = None,
    allowed: Collection[str] | None = None,
) -> str:
    """Map a dataset's label onto the model's label set.

    ``label_map`` keys match case-insensitively; a label the map does not name is kept as is.
    With ``allowed`` the result must be one of those labels (a case-only difference is folded to
    the allowed spelling); ``allowed=None`` accepts any non-empty label.

    Raises:
        LabelError: empty label, a label outside ``allowed``, or a map value outside ``allowed``.
    """
    key = raw.strip()
    if not key:
        raise LabelError("empty label")
    mapped = key
    if label_map:
        if key in label_map:
            mapped = label_map[key]
        else:
            folded = key.casefold()
            mapped = next((v for k, v in label_map.items() if k.casefold() == folded), key)
    if allowed is None or mapped in allowed:
        return mapped
    folded = mapped.casefold()
    for name in allowed:
        if name.casefold() == folded:
            return name
    shown = ", ".join(allowed)
    if mapped != key:
        raise LabelError(
            f"label_map maps {raw!r} to {mapped!r}, which is not an allowed label ({shown})"
        )
    raise LabelError(
        f"unknown label {raw!r} (allowed: {shown}); "
        f"map it with label_map={{{raw!r}: <one of the allowed labels>}}"
    )


def bio_labels(types: Sequence[str] = NER_TYPES) -> list[str]:
    """The tag set of a token-classification head: ``O``, then ``B-T``, ``I-T`` for each type."""
    tags = ["O"]
    for name in types:
        tags += [f"B-{name}", f"I-{name}"]
    return tags


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-LOC"`` -> ``("B", "LOC")``, ``"O"`` -> ``("O", None)``.

    Raises:
        LabelError: anything that is not ``O``, ``B-TYPE`` or ``I-TYPE``.
    """
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in "BI" and tag[1] == "-":
        return tag[0], tag[2:]
    raise LabelError(f"tag {tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)")


def bio_error(tags: Sequence[str]) -> tuple[int, str] | None:
    """The first place a tag sequence breaks BIO, as ``(token index, reason)``, else None.

    An ``I-X`` must follow ``B-X`` or ``I-X``; after ``O``, at the start, or after another type
    it is broken (it is how IOB1 data marks entity starts; :func:`repair_bio` converts it).
    """
    prev: str | None = None
    for i, tag in enumerate(tags):
        try:
            prefix, kind = split_tag(tag)
        except LabelError as err:
            return i, str(err)
        if prefix == "I" and prev != kind:
            after = "the sentence start" if i == 0 else repr(tags[i - 1])
            return i, (
                f"broken BIO: {tag!r} at token {i + 1} follows {after}; "
                f"fix the data or set repair_bio to read it as 'B-{kind}'"
            )
        prev = kind
    return None


def validate_bio(tags: Sequence[str]) -> str | None:
    """Why ``tags`` is not a valid BIO sequence, or None when it is."""
    found = bio_error(tags)
    return None if found is None else found[1]


def repair_bio(tags: Sequence[str]) -> tuple[tuple[str, ...], list[int]]:
    """Turn every ``I-X`` that cannot continue an entity into ``B-X``.

    Returns the repaired tags and the indexes that were changed. Tags that are not BIO at all
    are left for :func:`bio_error` to report.
    """
    out = list(tags)
    changed: list[int] = []
    prev: str | None = None
    for i, tag in enumerate(out):
        try:
            prefix, kind = split_tag(tag)
        except LabelError:
            prev = None
            continue
        if prefix == "I" and prev != kind:
            out[i] = f"B-{kind}"
            changed.append(i)
        prev = kind
    return tuple(out), changed
