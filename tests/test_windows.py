"""Windows: whole articles are covered, words are tagged once per window, targets are clipped."""
from __future__ import annotations

import pytest

from khabar.models.backbones import load_tokenizer
from khabar.models.windows import clip_targets, collate, length_sorted_batches, make_windows, word_spans

ARTICLE = ("أعلنت وزارة الخارجية في بغداد أن قائد فيلق القدس الإيراني وصل إلى العراق بعد الاتفاق "
           "مع الولايات المتحدة وقال مسؤول إن الزيارة تستمر يومين وتشمل لقاءات مع رئيس الحكومة ") * 3


@pytest.fixture(scope="module")
def tok(tiny_backbone):
    return load_tokenizer(str(tiny_backbone))


def test_windows_cover_every_word_and_overlap(tok):
    windows = make_windows(tok, [ARTICLE], max_length=32, stride=8)
    assert len(windows) > 3, "a long article must become several windows, not be truncated"
    assert all(len(w) <= 32 for w in windows)
    seen = {wid for w in windows for wid in w.word_ids if wid >= 0}
    assert seen == set(range(len(word_spans(ARTICLE))))
    for w in windows:
        ids = [i for i in w.word_ids if i >= 0]
        assert len(ids) == len(set(ids)), "a word is tagged on one sub-token per window"
    # consecutive windows share tokens (stride)
    assert windows[0].input_ids[-9:-1] == windows[1].input_ids[1:9]


def test_pair_windows_start_with_the_target(tok):
    target = "الفصائل المسلحة ترفض الاتفاق"
    windows = make_windows(tok, [ARTICLE, "خبر قصير"], max_length=32, stride=8,
                           targets=[(0, target), (1, target)])
    tgt_ids = tok(target, add_special_tokens=False)["input_ids"]
    assert {w.target for w in windows} == {0, 1}
    for w in windows:
        assert w.input_ids[1: 1 + len(tgt_ids)] == tgt_ids
    assert [w.item for w in windows if w.target == 1] == [1]


def test_long_targets_are_clipped_so_text_fits(tok):
    long_target = "قال مسؤول إن الزيارة تستمر يومين " * 20
    clipped = clip_targets(tok, [long_target, "قصير"], 12)
    assert len(tok(clipped[0], add_special_tokens=False)["input_ids"]) <= 12
    assert clipped[1] == "قصير"
    windows = make_windows(tok, [ARTICLE], max_length=32, stride=8, targets=[(0, long_target)])
    assert all(any(i >= 0 for i in w.word_ids) for w in windows), "every window holds some text"


def test_collate_pads_to_the_longest_in_batch(tok):
    windows = make_windows(tok, ["قصير", ARTICLE[:80]], max_length=64, stride=8)
    batch = collate(windows, pad_id=tok.pad_token_id)
    width = max(len(w) for w in windows)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum(1).tolist() == [len(w) for w in windows]
    assert batch["input_ids"][0, len(windows[0]):].eq(tok.pad_token_id).all()


def test_length_sorted_batches_group_similar_lengths(tok):
    texts = ["كلمة " * n for n in (30, 2, 25, 3, 28, 1)]
    windows = make_windows(tok, texts, max_length=64, stride=8)
    batches = length_sorted_batches(windows, 2)
    assert sorted(i for b in batches for i in b) == list(range(len(windows)))
    lens = [[len(windows[i]) for i in b] for b in batches]
    assert max(lens[0]) <= min(lens[-1])


FILLER = ("وقال مسؤول إن الزيارة تستمر يومين وتشمل لقاءات مع رئيس الحكومة في قصر السلام ") * 4
EVIDENCE = "وأعلنت الفصائل المسلحة أنها ترفض نتائج الحوار الاستراتيجي رفضا قاطعا "


@pytest.mark.parametrize("where", ["first", "last"])
def test_evidence_ranking_finds_the_paragraph_that_names_the_target(tok, where):
    from khabar.models.windows import evidence_ranked

    text = EVIDENCE + FILLER * 3 if where == "first" else FILLER * 3 + EVIDENCE
    windows = make_windows(tok, [text], max_length=48, stride=8,
                           targets=[(0, "الفصائل المسلحة ترفض نتائج الحوار")])
    assert len(windows) > 3
    ranked = evidence_ranked(windows)[0]
    assert sorted(ranked) == list(range(len(windows)))
    best = windows[ranked[0]]
    text_ids = best.input_ids[best.text_range[0]: best.text_range[1]]
    assert set(tok("الفصائل", add_special_tokens=False)["input_ids"]) <= set(text_ids)


def test_evidence_ranking_keeps_reading_order_on_ties(tok):
    from khabar.models.windows import evidence_ranked

    windows = make_windows(tok, [FILLER * 3], max_length=48, stride=8, targets=[(0, "كأس العالم")])
    assert evidence_ranked(windows)[0] == list(range(len(windows)))
