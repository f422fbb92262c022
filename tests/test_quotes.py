"""What an actor said: quoted and reported speech found inside evidence spans, with offsets."""
from __future__ import annotations

from khabar.models.quotes import speech_spans


def spoken(text: str, spans=None) -> list[str]:
    return [text[s:e] for s, e in speech_spans(text, spans or [(0, len(text))])]


def test_quoted_words_in_any_quotation_marks():
    text = 'وأضاف الوزير: «هذا القانون سيعيد الأمل للمزارعين». وقال النائب "الاتفاق كارثة على الصناعة".'
    assert spoken(text) == ["هذا القانون سيعيد الأمل للمزارعين", "الاتفاق كارثة على الصناعة"]
    assert spoken("وقال: “لن نوقع عليه أبدا”") == ["لن نوقع عليه أبدا"]


def test_reported_speech_after_a_speech_verb_and_its_particle():
    text = "وقال وزير الداخلية أمام النواب إن النص الجديد سيمنح المجالس صلاحيات حقيقية"
    assert spoken(text) == ["النص الجديد سيمنح المجالس صلاحيات حقيقية"]
    assert spoken("وأكدت النقابة أنها ستواصل الإضراب حتى النهاية") == ["ستواصل الإضراب حتى النهاية"]


def test_speech_verbs_and_particles_match_without_hamzas():
    # News sites and social text often drop the hamza (اكد، ان) and write final ى as ي.
    assert spoken("واكدت النقابة انها ستواصل الإضراب حتى النهاية") == ["ستواصل الإضراب حتى النهاية"]
    assert spoken("وراي الخبير ان الخطة لن تنجح ابدا") == ["الخطة لن تنجح ابدا"]


def test_no_speech_and_too_short_quotes_give_nothing():
    assert spoken("والتقى قآاني قادة الأحزاب في بغداد") == []
    assert spoken('وقال "لا" فقط') == []
    assert spoken("يقولون إن") == []  # a speech verb glued to a suffix is another word


def test_only_inside_the_given_spans_with_offsets_into_the_text():
    text = "رحبت الحكومة بالخطة. وقال رئيس الحزب إن الخطة لن تحل الأزمة أبدا."
    second = (text.index("وقال"), len(text))
    [(s, e)] = speech_spans(text, [second])
    assert text[s:e] == "الخطة لن تحل الأزمة أبدا."
    assert speech_spans(text, [(0, text.index("."))]) == []
