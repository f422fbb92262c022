"""Label sets, label mapping and BIO checks (khabar.training.labels)."""
from __future__ import annotations

import pytest

from khabar.training.labels import (
    DEFAULT_STANCE_MAP,
    NER_TYPES,
    STANCE_LABELS,
    LabelError,
    bio_error,
    bio_labels,
    map_label,
    repair_bio,
    split_tag,
    validate_bio,
)


def test_stance_labels_and_default_map_cover_every_dataset_label() -> None:
    assert STANCE_LABELS == ("favor", "against", "neutral", "unrelated")
    expected = {
        "agree": "favor", "disagree": "against", "discuss": "neutral", "other": "neutral",
        "none": "neutral", "neutral": "neutral", "unrelated": "unrelated", "favor": "favor",
        "against": "against",
    }
    for raw, unified in expected.items():
        assert map_label(raw, DEFAULT_STANCE_MAP, STANCE_LABELS) == unified
    assert set(DEFAULT_STANCE_MAP.values()) == set(STANCE_LABELS)


@pytest.mark.parametrize("raw", ["AGREE", "Agree", " agree "])
def test_map_label_keys_match_case_insensitively(raw: str) -> None:
    assert map_label(raw, DEFAULT_STANCE_MAP, STANCE_LABELS) == "favor"


def test_map_label_without_map_keeps_label_and_folds_case_to_allowed_spelling() -> None:
    assert map_label("sport") == "sport"
    assert map_label("internationalnews", None, ["internationalNews"]) == "internationalNews"


def test_map_label_unknown_label_names_allowed_set_and_label_map() -> None:
    with pytest.raises(LabelError) as info:
        map_label("maybe", DEFAULT_STANCE_MAP, STANCE_LABELS)
    message = str(info.value)
    assert "'maybe'" in message
    assert "favor, against, neutral, unrelated" in message
    assert "label_map=" in message


def test_map_label_map_value_outside_allowed_is_an_error() -> None:
    with pytest.raises(LabelError, match="maps 'agree' to 'favour'"):
        map_label("agree", {"agree": "favour"}, STANCE_LABELS)


@pytest.mark.parametrize("raw", ["", "   "])
def test_map_label_empty_label(raw: str) -> None:
    with pytest.raises(LabelError, match="empty label"):
        map_label(raw)


def test_bio_labels_order() -> None:
    assert bio_labels(NER_TYPES) == [
        "O", "B-PERS", "I-PERS", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    assert bio_labels(["LOC"]) == ["O", "B-LOC", "I-LOC"]


def test_split_tag() -> None:
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PERS") == ("B", "PERS")
    for bad in ("B-", "PERS", "E-LOC", "b-LOC", ""):
        with pytest.raises(LabelError, match="not a BIO tag"):
            split_tag(bad)


@pytest.mark.parametrize("tags", [
    [],
    ["O", "O"],
    ["B-PERS", "I-PERS", "O", "B-LOC"],
    ["B-LOC", "B-LOC", "I-LOC"],
])
def test_validate_bio_accepts_valid_sequences(tags: list[str]) -> None:
    assert validate_bio(tags) is None
    assert bio_error(tags) is None


@pytest.mark.parametrize(("tags", "index", "words"), [
    (["O", "I-LOC"], 1, "follows 'O'"),
    (["I-ORG", "I-ORG"], 0, "follows the sentence start"),
    (["B-PERS", "I-LOC"], 1, "follows 'B-PERS'"),
    (["B-LOC", "X"], 1, "not a BIO tag"),
])
def test_bio_error_reports_first_break(tags: list[str], index: int, words: str) -> None:
    found = bio_error(tags)
    assert found is not None
    assert found[0] == index
    assert words in found[1]
    assert validate_bio(tags) == found[1]


def test_broken_bio_message_points_to_repair() -> None:
    reason = validate_bio(["O", "I-LOC"])
    assert reason is not None and "broken BIO" in reason and "repair_bio" in reason


def test_repair_bio_turns_stray_inside_tags_into_begin_tags() -> None:
    tags, changed = repair_bio(["I-ORG", "I-ORG", "O", "I-LOC", "B-PERS", "I-LOC", "I-LOC"])
    assert tags == ("B-ORG", "I-ORG", "O", "B-LOC", "B-PERS", "B-LOC", "I-LOC")
    assert changed == [0, 3, 5]
    assert validate_bio(tags) is None


def test_repair_bio_leaves_valid_sequences_alone() -> None:
    tags = ("B-PERS", "I-PERS", "O")
    assert repair_bio(tags) == (tags, [])
