"""Stance cues: the reporting words that say which side an actor takes, with exact offsets."""
from __future__ import annotations

import pytest

from khabar.models.stance_cues import ENACT_WEIGHT, NEGATED_WEIGHT, cue_side, find_cues


def sides(text: str, target: str | None = None) -> list[tuple[str, str, float]]:
    return [(text[c.start:c.end], c.side, c.weight) for c in find_cues(text, target)]


@pytest.mark.parametrize("text, word, side", [
    ("ورحّبت الحكومة في بيان رسمي بالاتفاق", "ورحّبت", "favor"),
    ("أعلنت الفصائل أنها سترفضه", "سترفضه", "against"),
    ("وندّد الحزب بالقرار", "وندّد", "against"),
    ("يؤيدون الخطة", "يؤيدون", "favor"),
    ("لقي القانون تأييدا واسعا", "تأييدا", "favor"),
    ("أعلن المجلس مقاطعته للمؤتمر", "مقاطعته", "against"),  # ta marbuta written ت before a pronoun
    ("وأعلنت الكويت دعمها للطلب", "دعمها", "favor"),
])
def test_verbs_and_nouns_with_their_clitics(text, word, side):
    found = [(w, s) for w, s, _ in sides(text)]
    assert (word, side) in found


@pytest.mark.parametrize("text", ["رفع أيدي العمال", "ارتفع الدين العام", "دعم الوقود يكلف الموازنة",
                                  "ثمن النفط", "قال صادق إن", "دليل قاطع"])
def test_nouns_and_names_that_share_a_stem_are_not_cues(text):
    assert sides(text) == []


def test_a_negated_cue_counts_for_the_other_side_at_a_lower_weight():
    assert sides("لم يعترض الوزير على القرار") == [("يعترض", "favor", NEGATED_WEIGHT)]
    assert sides("لا ترحب النقابة بالخطة") == [("ترحب", "against", NEGATED_WEIGHT)]


def test_enacting_the_target_counts_only_where_the_clause_names_it():
    target = "رفع سعر الفائدة"
    assert sides("قرر البنك المركزي رفع سعر الفائدة", target) == [("قرر", "favor", ENACT_WEIGHT)]
    assert sides("قرر البنك المركزي تأجيل الاجتماع", target) == []
    assert sides("قرر البنك المركزي رفع سعر الفائدة") == []  # no target given


def test_cue_side_adds_up_the_clauses_and_keeps_offsets_into_the_text():
    text = "قرر البنك رفع سعر الفائدة. لكن النقابة رفضت القرار وانتقدت البنك."
    first, second = (0, text.index(".")), (text.index("لكن"), len(text))
    side, cues = cue_side(text, [second])
    assert side == "against" and [text[c.start:c.end] for c in cues] == ["رفضت", "وانتقدت"]
    side, cues = cue_side(text, [first], "رفع سعر الفائدة")
    assert side == "favor" and text[cues[0].start:cues[0].end] == "قرر"
    assert cue_side(text, [first]) == (None, [])
    # One explicit rejection outweighs an enactment verb in the same span.
    assert cue_side(text, [first, second], "رفع سعر الفائدة")[0] == "against"


@pytest.mark.parametrize("text", ["أعلنت الفصائل أنها ترفض الاتفاق", "أعلن الحزب رفضه للاتفاق",
                                  "كشف الوزير عن تأييده للاتفاق"])
def test_an_enactment_verb_that_carries_a_reported_position_does_not_count(text):
    found = sides(text, "الاتفاق")
    assert [w for w, _, _ in found if w in ("أعلنت", "أعلن", "كشف")] == []
    assert len(found) == 1 and found[0][2] == 1.0  # the reported stance word alone


def test_an_enactment_verb_with_its_object_still_counts():
    assert sides("أعلنت الحكومة الاتفاق مع النقابة", "الاتفاق") == [("أعلنت", "favor", ENACT_WEIGHT)]
    assert [w for w, _, _ in sides("أعلنت الحكومة أنها ستمضي في الاتفاق", "الاتفاق")] == ["أعلنت"]


def test_a_vote_counts_for_the_side_it_was_cast_for():
    assert sides("وصوّت نواب الكتلة جميعهم لصالح المشروع") == [("وصوّت", "favor", 1.0)]
    assert sides("صوّت الحزب ضد القانون") == [("صوّت", "against", 1.0)]
    assert sides("رفع النائب صوته في القاعة") == []  # a voice, not a vote


def test_undoing_the_target_counts_against_it_only_where_the_clause_names_it():
    assert sides("طالبت النقابة بإلغاء القانون", "القانون") == [("بإلغاء", "against", 1.0)]
    # The undoing word carries the enactment verb before it: one cue, against.
    assert sides("قرر البنك تجميد الاتفاق", "الاتفاق") == [("تجميد", "against", 1.0)]
    assert sides("طالبت النقابة بإلغاء الضريبة", "القانون") == []
    # Homographs of undoing words: a holiday, champions, prices falling.
    for text, word in (("أعلنت المديرية عطلة بمناسبة القانون", "عطلة"), ("استقبل أبطال القانون", "أبطال"),
                       ("تراجع سعر القانون", "تراجع")):
        assert word not in [w for w, _, _ in sides(text, "القانون")]


def test_a_stance_word_inside_the_target_s_own_name_is_not_a_side():
    assert sides("رحبت الحكومة بانسحاب القوات", "انسحاب القوات") == [("رحبت", "favor", 1.0)]
    assert sides("دعت الأحزاب إلى مقاطعة المنتجات المستوردة", "مقاطعة المنتجات المستوردة") == []
    assert sides("دعت الأحزاب إلى مقاطعة المنتجات المستوردة")[0][1] == "against"
