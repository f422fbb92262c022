"""The predictor: a batch of requests in, topic / stance / entities out.

Used by the service, batch jobs and evaluation alike, so labels are the same wherever they come
from. Windows of all articles in a batch are sorted by length and padded per batch; topic and
entities come from one encoder pass per window, stance from one pass per (target, window), over
the first ``schema.stance_windows`` windows (what the model was trained to read).
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from khabar.models.normalize import Normalized, normalize
from khabar.models.schema import API_TASKS, ModelSchema
from khabar.models.windows import Window, collate, length_sorted_batches, make_windows, word_spans

ALL_API_TASKS = tuple(API_TASKS)


@dataclass
class LabelRequest:
    """One article to label; ``tasks`` use the API names (topic, stance, entities)."""

    text: str
    targets: Sequence[str] = ()
    tasks: Sequence[str] = ALL_API_TASKS


@dataclass
class _Prepared:
    norm: Normalized
    tasks: set[str]
    targets: list[str]
    warnings: list[str] = field(default_factory=list)


def arabic_ratio(text: str) -> float:
    """Share of letters that are Arabic script (0..1); 0 for text with no letters."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    arabic = sum(1 for c in letters if "ARABIC" in unicodedata.name(c, ""))
    return arabic / len(letters)


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TorchEngine:
    """Runs the PyTorch model on padded batches; returns numpy logits per task."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, batch: dict[str, torch.Tensor], tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(**batch, tasks=tasks)
        return {k: v.float().numpy() for k, v in out.items()}


class Predictor:
    """Labels articles with a loaded model. Thread-compatible (no per-call state on self)."""

    def __init__(self, model: torch.nn.Module, tokenizer, schema: ModelSchema, *,
                 batch_size: int = 16, model_info: dict | None = None,
                 engine: Callable | None = None, threads: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.schema = schema
        self.batch_size = batch_size
        self.model_info = model_info or {"name": "khabar", "version": "unknown"}
        self.engine = engine or TorchEngine(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if threads is None:
            threads = int(os.environ.get("KHABAR_THREADS", "0")) or os.cpu_count() or 1
        torch.set_num_threads(threads)

    @property
    def api_tasks(self) -> list[str]:
        """The API task names this model can answer."""
        return [api for api, internal in API_TASKS.items() if internal in self.schema.tasks]

    def label(self, requests: Sequence[LabelRequest]) -> list[dict]:
        """Label a batch of requests; results are in request order."""
        prepared = [self._prepare(r) for r in requests]
        results = [self._empty_result(p) for p in prepared]
        self._run_single(prepared, results)
        self._run_stance(prepared, results)
        return results

    def label_one(self, text: str, targets: Sequence[str] = (), tasks: Sequence[str] = ALL_API_TASKS) -> dict:
        """Convenience wrapper around :meth:`label` for one article."""
        return self.label([LabelRequest(text, targets, tasks)])[0]

    # -- internals -----------------------------------------------------------------------------
    def _prepare(self, req: LabelRequest) -> _Prepared:
        unknown = [t for t in req.tasks if t not in API_TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {list(API_TASKS)}")
        missing = [t for t in req.tasks if API_TASKS[t] not in self.schema.tasks]
        if missing:
            raise ValueError(f"this model has no {missing} task(s); it has {self.api_tasks}")
        prep = _Prepared(norm=normalize(req.text), tasks=set(req.tasks), targets=list(req.targets))
        ratio = arabic_ratio(req.text)
        if ratio < 0.5:
            prep.warnings.append(
                f"text is mostly not Arabic ({ratio:.0%} of letters are Arabic): labels may be unreliable"
            )
        if not prep.norm.text.strip():
            prep.warnings.append("text has nothing left to label after normalization")
        return prep

    def _empty_result(self, p: _Prepared) -> dict:
        return {"topic": None, "stance": [], "entities": [], "warnings": p.warnings,
                "model": dict(self.model_info)}

    def _forward_windows(self, windows: list[Window], tasks: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
        """Per-window logits, in window order, from length-sorted padded batches."""
        per_window: list[dict[str, np.ndarray]] = [None] * len(windows)  # type: ignore[list-item]
        order = list(length_sorted_batches(windows, self.batch_size))
        batches = (collate([windows[i] for i in idx], self.pad_id) for idx in order)
        # Engines that can run batches side by side (ONNX streams) say so with a `map` method.
        run = getattr(self.engine, "map", None)
        outputs = run(batches, tasks) if run is not None else (self.engine(b, tasks) for b in batches)
        for idx, out in zip(order, outputs):
            for row, i in enumerate(idx):
                n = len(windows[i])
                per_window[i] = {t: (v[row, :n] if t == "ner" else v[row]) for t, v in out.items()}
        return per_window

    def _run_single(self, prepared: list[_Prepared], results: list[dict]) -> None:
        wanted = [i for i, p in enumerate(prepared)
                  if ({"topic", "entities"} & p.tasks) and p.norm.text.strip()]
        if not wanted:
            return
        tasks = tuple(t for t in ("topic", "ner") if any(
            {"topic": "topic", "ner": "entities"}[t] in prepared[i].tasks for i in wanted))
        windows = make_windows(self.tokenizer, [prepared[i].norm.text for i in wanted],
                               max_length=self.schema.max_length, stride=self.schema.stride)
        logits = self._forward_windows(windows, tasks)
        by_item: dict[int, list[int]] = {}
        for w, win in enumerate(windows):
            by_item.setdefault(win.item, []).append(w)
        for k, i in enumerate(wanted):
            ws = by_item.get(k, [])
            p = prepared[i]
            if "topic" in p.tasks and ws:
                results[i]["topic"] = self._pooled(
                    "topic", [softmax(logits[w]["topic"]) for w in ws], [len(windows[w]) for w in ws])
            if "entities" in p.tasks:
                results[i]["entities"] = self._entities(p.norm, [windows[w] for w in ws],
                                                        [logits[w]["ner"] for w in ws])

    def _run_stance(self, prepared: list[_Prepared], results: list[dict]) -> None:
        pairs, owners = [], []
        texts = [p.norm.text for p in prepared]
        for i, p in enumerate(prepared):
            if "stance" in p.tasks and p.norm.text.strip():
                for t, target in enumerate(p.targets):
                    pairs.append((i, normalize(target).text))
                    owners.append((i, t))
        if not pairs:
            return
        windows = make_windows(self.tokenizer, texts, max_length=self.schema.max_length,
                               stride=self.schema.stride, targets=pairs)
        if self.schema.stance_windows is not None:
            # Windows of one pair come out in reading order: keep the first N (see ModelSchema).
            seen: dict[int, int] = {}
            kept = []
            for win in windows:
                seen[win.target] = seen.get(win.target, 0) + 1
                if seen[win.target] <= self.schema.stance_windows:
                    kept.append(win)
            windows = kept
        logits = self._forward_windows(windows, ("stance",))
        by_pair: dict[int, list[int]] = {}
        for w, win in enumerate(windows):
            by_pair.setdefault(win.target, []).append(w)
        for pair, (i, t) in enumerate(owners):
            ws = by_pair.get(pair, [])
            if not ws:
                continue
            pooled = self._pooled("stance", [softmax(logits[w]["stance"]) for w in ws],
                                  [len(windows[w]) for w in ws])
            results[i]["stance"].append({"target": prepared[i].targets[t], **pooled})

    def _pooled(self, task: str, probs: list[np.ndarray], weights: list[int]) -> dict:
        """Average window probabilities, weighted by window length."""
        avg = np.average(np.stack(probs), axis=0, weights=np.asarray(weights, dtype=float))
        labels = self.schema.tasks[task]
        best = int(avg.argmax())
        return {"label": labels[best], "score": float(avg[best]),
                "scores": {lab: float(avg[j]) for j, lab in enumerate(labels)}}

    def _entities(self, norm: Normalized, windows: list[Window], logits: list[np.ndarray]) -> list[dict]:
        """Merge word probabilities over windows, decode BIO, map spans to the original text."""
        spans = word_spans(norm.text)
        labels = self.schema.tasks["ner"]
        acc = np.zeros((len(spans), len(labels)))
        counts = np.zeros(len(spans))
        for win, lg in zip(windows, logits):
            probs = softmax(lg)
            for tok, word in enumerate(win.word_ids):
                if word >= 0:
                    acc[word] += probs[tok]
                    counts[word] += 1
        entities, current = [], None
        for w in range(len(spans)):
            if counts[w] == 0:
                tag, score = "O", 1.0
            else:
                avg = acc[w] / counts[w]
                tag, score = labels[int(avg.argmax())], float(avg.max())
            kind = tag[2:] if tag != "O" else None
            if current is not None and (kind is None or tag.startswith("B-") or kind != current["label"]):
                entities.append(current)
                current = None
            if kind is not None:
                if current is None:
                    current = {"label": kind, "first": w, "last": w, "scores": [score]}
                else:
                    current["last"], current["scores"] = w, current["scores"] + [score]
        if current is not None:
            entities.append(current)
        out = []
        for ent in entities:
            start, end = norm.span_to_original(spans[ent["first"]][0], spans[ent["last"]][1])
            out.append({"text": norm.original[start:end], "label": ent["label"], "start": start,
                        "end": end, "score": float(np.mean(ent["scores"]))})
        return out
