"""Overlapping token windows over whole articles, with the word each token starts.

Articles longer than the model's window are never truncated: the fast tokenizer's overflow
mechanism cuts them into windows of ``max_length`` tokens overlapping by ``stride`` tokens, and
every window remembers which article (and which stance target) it came from, so that predictions
can be merged back per article. Entities are labelled per *word* (a whitespace-separated unit of
the normalized text) on the word's first sub-token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from khabar.models.normalize import word_spans

__all__ = ["Window", "make_windows", "clip_targets", "collate", "evidence_ranked", "length_sorted_batches",
           "word_spans"]


@dataclass
class Window:
    """One encoder input. ``word_ids[i]`` is the word whose first sub-token is token i, else -1."""

    item: int
    input_ids: list[int]
    token_type_ids: list[int] | None
    word_ids: list[int]
    target: int = -1
    # Token ranges [start, end) of the target and of the text inside input_ids (pairs only).
    target_range: tuple[int, int] = (0, 0)
    text_range: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.input_ids)


def make_windows(tokenizer, texts: list[str], *, max_length: int, stride: int,
                 targets: list[tuple[int, str]] | None = None) -> list[Window]:
    """Cut ``texts`` (already normalized) into windows.

    Without ``targets``, one sequence per text (topic and entities). With ``targets`` as
    ``(text_index, target)`` pairs, each pair is encoded as ``target`` + text window (stance); the
    window's ``target`` is the pair's position in ``targets``.
    """
    if targets is None:
        firsts, seconds, items = texts, None, list(range(len(texts)))
    else:
        items = [i for i, _ in targets]
        firsts = clip_targets(tokenizer, [t for _, t in targets], (max_length - stride) // 2)
        seconds = [texts[i] for i in items]
    if not firsts:
        return []
    enc = tokenizer(
        firsts, seconds, truncation="only_second" if seconds is not None else True,
        max_length=max_length, stride=stride, return_overflowing_tokens=True,
        return_offsets_mapping=True, padding=False,
    )
    text_seq = 1 if seconds is not None else 0
    spans_cache: dict[int, list[int]] = {}
    windows = []
    for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
        item = items[sample]
        text = texts[item]
        starts = spans_cache.get(item)
        if starts is None:
            starts = _word_start_index(text)
            spans_cache[item] = starts
        seq_ids = enc.sequence_ids(w)
        word_ids, seen = [], set()
        for (a, b), seq in zip(enc["offset_mapping"][w], seq_ids):
            word = starts[a] if seq == text_seq and b > a and a < len(starts) else -1
            if word >= 0 and word not in seen:
                seen.add(word)
                word_ids.append(word)
            else:
                word_ids.append(-1)
        windows.append(Window(
            item=item, input_ids=enc["input_ids"][w],
            token_type_ids=enc["token_type_ids"][w] if "token_type_ids" in enc else None,
            word_ids=word_ids, target=sample if targets is not None else -1,
            target_range=_seq_range(seq_ids, 0) if targets is not None else (0, 0),
            text_range=_seq_range(seq_ids, text_seq),
        ))
    return windows


def _seq_range(seq_ids: list, which: int) -> tuple[int, int]:
    positions = [i for i, s in enumerate(seq_ids) if s == which]
    return (positions[0], positions[-1] + 1) if positions else (0, 0)


def evidence_ranked(windows: list[Window]) -> dict[int, list[int]]:
    """For each stance pair, the indices of its windows, the likeliest evidence first.

    A window's score is the sum over the target's distinct sub-tokens found in its text of
    log(1 + n / df), where n is the pair's window count and df the number of its windows holding
    that sub-token: words of the target that occur everywhere in the article (particles, the
    article's subject) count little, rarer ones that place the claim count most. Ties keep reading
    order, so a one-window text and a text that never names the target fall back to the first
    windows. The ranking depends on content only, so moving a paragraph moves its window's rank
    with it.
    """
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.target, []).append(i)
    ranked = {}
    for pair, idx in groups.items():
        if len(idx) == 1:
            ranked[pair] = idx
            continue
        first = windows[idx[0]]
        target = set(first.input_ids[first.target_range[0]: first.target_range[1]])
        found = [target & set(windows[i].input_ids[windows[i].text_range[0]: windows[i].text_range[1]])
                 for i in idx]
        df: dict[int, int] = {}
        for toks in found:
            for t in toks:
                df[t] = df.get(t, 0) + 1
        n = len(idx)
        scores = [sum(math.log1p(n / df[t]) for t in toks) for toks in found]
        order = sorted(range(n), key=lambda k: (-scores[k], k))
        ranked[pair] = [idx[k] for k in order]
    return ranked


def clip_targets(tokenizer, targets: list[str], max_tokens: int) -> list[str]:
    """Cut stance targets to ``max_tokens`` tokens so every window keeps room for the text
    (a target is a claim or headline; its first tokens carry it)."""
    enc = tokenizer(targets, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for target, offsets in zip(targets, enc["offset_mapping"]):
        out.append(target if len(offsets) <= max_tokens else target[: offsets[max_tokens - 1][1]])
    return out


def _word_start_index(text: str) -> list[int]:
    """Per character: the index of the word starting there, or -1 (not a word's first char)."""
    starts = [-1] * len(text)
    for i, (s, _) in enumerate(word_spans(text)):
        starts[s] = i
    return starts


def collate(windows: list[Window], pad_id: int, labels: list | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch of windows to its own longest window (dynamic padding)."""
    width = max(len(w) for w in windows)
    n = len(windows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long) if windows[0].token_type_ids is not None else None
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(w.input_ids)
        mask[i, : len(w)] = 1
        if types is not None:
            types[i, : len(w)] = torch.tensor(w.token_type_ids)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def length_sorted_batches(windows: list[Window], batch_size: int) -> list[list[int]]:
    """Indices of windows grouped into batches of similar length (less padding, faster)."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
