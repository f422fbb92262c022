"""The predictor: a batch of requests in, topic / stance / entities out.

Used by the service, batch jobs and evaluation alike, so labels are the same wherever they come
from. Windows of all articles in a batch are sorted by length and padded per batch; topic and
entities come from one encoder pass per window, stance from one pass per (target, window), over
``schema.stance_windows`` windows per target picked as the model was trained to pick them.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from khabar.models.actor_stance import label_actors
from khabar.models.hybrid import fields_for, softmax
from khabar.models.normalize import Normalized, normalize
from khabar.models.schema import ACTORS, API_TASKS, ModelSchema
from khabar.models.windows import (Window, collate, evidence_ranked, length_sorted_batches, make_windows,
                                   word_spans)

NO_TARGETS_WARNING = "stance was asked for without targets: add them in 'targets'"


@dataclass
class Article:
    """One article to label and what to label in it (the predictor's input; the HTTP API's body is
    :class:`khabar.serving.schemas.LabelRequest`).

    ``tasks`` use the API names (:data:`khabar.models.schema.REQUEST_TASKS`: topic, stance,
    entities, and ``actors``: each actor's stance toward each target, from ``actors`` and the
    PERS / ORG entities found); None runs every task the model has.
    """

    text: str
    targets: Sequence[str] = ()
    tasks: Sequence[str] | None = None
    actors: Sequence[str] = ()


@dataclass
class _Prepared:
    norm: Normalized
    tasks: set[str]  # heads to run, by their internal names (topic, stance, ner)
    targets: list[str]
    warnings: list[str] = field(default_factory=list)
    actors: list[str] | None = None  # None: actor stance not asked for
    hide_entities: bool = False  # entities computed for the actors only


def arabic_ratio(text: str) -> float:
    """Share of letters that are Arabic script (0..1); 0 for text with no letters."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    arabic = sum(1 for c in letters if "ARABIC" in unicodedata.name(c, ""))
    return arabic / len(letters)


def evidence_weights(probs: list[np.ndarray], labels: list[str]) -> list[float]:
    """Pooling weights for stance windows: (1 - p(unrelated))^2 + 0.05 / n each.

    An article's stance usually rests on one or two paragraphs; a mean over every window lets many
    off-topic paragraphs drown them. Squaring the "about the target" mass makes a window that
    clearly bears on the target outweigh the others, and the floor (0.05 shared by all n windows,
    so a long article cannot outvote its evidence with it) still pools a text where no window bears
    on the target to an even mean.
    """
    if "unrelated" not in labels:
        return [1.0] * len(probs)
    u = labels.index("unrelated")
    floor = 0.05 / max(len(probs), 1)
    return [float((1.0 - p[u]) ** 2 + floor) for p in probs]


def first_windows(windows: list[Window], cap: int, key: Callable[[Window], int]) -> list[Window]:
    """The first ``cap`` windows of each group (``key``: the article for topic, the (article,
    target) pair for stance), order kept; make_windows emits a group's windows in reading order."""
    seen: dict[int, int] = {}
    kept = []
    for win in windows:
        seen[key(win)] = seen.get(key(win), 0) + 1
        if seen[key(win)] <= cap:
            kept.append(win)
    return kept


def pool(probs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted mean of window probabilities."""
    return np.average(np.stack(probs), axis=0, weights=np.asarray(weights, dtype=float))


def bio_viterbi(word_probs: np.ndarray, labels: list[str]) -> list[int]:
    """The most probable tag sequence (label indices) under BIO constraints.

    ``I-X`` may only follow ``B-X`` or ``I-X`` (and cannot start a sentence); every other move is
    free. Word-level argmax would emit an ``I-`` with no ``B-`` or flip types inside a name; here
    such a word gets the best tag that keeps the sequence well formed.
    """
    n, k = word_probs.shape
    if n == 0:
        return []
    logp = np.log(np.clip(word_probs, 1e-12, 1.0))
    inside = [lab.startswith("I-") for lab in labels]
    allowed = np.ones((k, k), dtype=bool)  # allowed[prev, cur]
    for c, lab in enumerate(labels):
        if inside[c]:
            allowed[:, c] = [labels[p] in ("B-" + lab[2:], lab) for p in range(k)]
    trans = np.where(allowed, 0.0, -np.inf)
    score = logp[0] + np.where(inside, -np.inf, 0.0)
    back = np.zeros((n, k), dtype=np.int64)
    for w in range(1, n):
        cand = score[:, None] + trans
        back[w] = cand.argmax(0)
        score = cand.max(0) + logp[w]
    path = [int(score.argmax())]
    for w in range(n - 1, 0, -1):
        path.append(int(back[w, path[-1]]))
    return path[::-1]


class TorchEngine:
    """Runs the PyTorch model on padded batches; returns numpy logits per task."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, batch: dict[str, torch.Tensor], tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(**batch, tasks=tasks)
        return {k: v.float().numpy() for k, v in out.items()}


class Predictor:
    """Labels articles with a loaded model. Thread-compatible (no per-call state on self).

    It never changes torch's thread count, which is global to the process: whoever owns the
    process sets it once (:func:`khabar.settings.use_torch_threads`).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, schema: ModelSchema, *,
                 batch_size: int = 16, model_info: dict | None = None,
                 engine: Callable | None = None,
                 hybrid: dict | None = None, offsets: bool = True, keep_parts: bool = False,
                 ner_decoding: str = "viterbi") -> None:
        """``hybrid`` (task -> models.hybrid.HybridHead) blends a linear part into topic and stance;
        ``offsets`` applies its decision offsets; ``keep_parts`` adds each part's scores to the
        topic and stance results under ``parts`` (evaluation compares them); ``ner_decoding`` is
        ``viterbi`` (BIO-constrained, the default) or ``argmax`` (per word, for comparison).
        A model from the store is built with :meth:`from_loaded`; this constructor is for a model
        in memory (training's dev evaluation) and for tests."""
        if ner_decoding not in ("viterbi", "argmax"):
            raise ValueError(f"ner_decoding must be 'viterbi' or 'argmax', got {ner_decoding!r}")
        self.ner_decoding = ner_decoding
        self.tokenizer = tokenizer
        self.schema = schema
        self.batch_size = batch_size
        self.model_info = model_info or {"name": "khabar", "version": "unknown"}
        self.hybrid = hybrid or {}
        self.offsets = offsets
        self.keep_parts = keep_parts
        self.engine = engine or TorchEngine(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_loaded(cls, loaded, *, engine: Callable | None = None, with_hybrid: bool = True,
                    **kwargs) -> "Predictor":
        """The predictor of a stored model (models.store.LoadedModel): its weights, schema, name and
        hybrid heads; ``engine`` replaces the PyTorch forward (ONNX); ``with_hybrid=False`` leaves
        the hybrid heads out (fitting new ones reads the encoder's own probabilities)."""
        hybrid = getattr(loaded, "hybrid", None) if with_hybrid else None
        return cls(loaded.model, loaded.tokenizer, loaded.schema, model_info=loaded.info,
                   hybrid=hybrid, engine=engine, **kwargs)

    @property
    def api_tasks(self) -> list[str]:
        """The API task names this model can answer."""
        return self.schema.api_tasks()

    def label(self, requests: Sequence[Article]) -> list[dict]:
        """Label a batch of articles; results are in request order. Raises
        :class:`~khabar.models.schema.TaskError` for a task the model lacks."""
        prepared = [self._prepare(r) for r in requests]
        results = [self._empty_result(p) for p in prepared]
        self._run_single(prepared, results)
        self._run_stance(prepared, results)
        if any(p.actors is not None for p in prepared):
            label_actors(prepared, results, self._score_claims)
        return results

    def _score_claims(self, pairs: list[tuple[str, str]]) -> list[dict | None]:
        """Stance scores of (text, claim) pairs, read as the article-level stance reads a target."""
        prepared = [_Prepared(norm=normalize(text), tasks={"stance"}, targets=[claim]) for text, claim in pairs]
        scored = [self._empty_result(p) for p in prepared]
        self._run_stance(prepared, scored)
        return [res["stance"][0]["scores"] if res["stance"] else None for res in scored]

    def label_one(self, text: str, targets: Sequence[str] = (), tasks: Sequence[str] | None = None) -> dict:
        """Convenience wrapper around :meth:`label` for one article."""
        return self.label([Article(text, targets, tasks)])[0]

    # -- internals -----------------------------------------------------------------------------
    def _prepare(self, req: Article) -> _Prepared:
        tasks = self.schema.request_tasks(req.tasks, req.actors)
        heads = {API_TASKS[t] for t in tasks if t != ACTORS}
        prep = _Prepared(norm=normalize(req.text), tasks=heads, targets=list(req.targets))
        if req.actors or ACTORS in tasks:
            prep.actors = list(req.actors)
            prep.tasks.add("stance")  # actors are reported under each target's stance
            if "ner" in self.schema.tasks and "ner" not in prep.tasks:
                prep.tasks.add("ner")  # PERS / ORG entities are actors too
                prep.hide_entities = True
        # Asked for by name (not just "every task the model has"), stance with no target is a
        # request that cannot get what it wants: say so in every result, service or batch job.
        if not req.targets and (req.actors or {"stance", ACTORS} & set(req.tasks or ())):
            prep.warnings.append(NO_TARGETS_WARNING)
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
                  if ({"topic", "ner"} & p.tasks) and p.norm.text.strip()]
        if not wanted:
            return
        tasks = tuple(t for t in ("topic", "ner") if any(t in prepared[i].tasks for i in wanted))
        windows = make_windows(self.tokenizer, [prepared[i].norm.text for i in wanted],
                               max_length=self.schema.max_length, stride=self.schema.stride)
        cap = self.schema.topic_windows
        if cap is not None and "ner" not in tasks:
            windows = first_windows(windows, cap, key=lambda w: w.item)  # topic alone: the rest go unread
        logits = self._forward_windows(windows, tasks)
        by_item: dict[int, list[int]] = {}
        for w, win in enumerate(windows):
            by_item.setdefault(win.item, []).append(w)  # reading order within an item
        topic_rows, topic_probs = [], []
        for k, i in enumerate(wanted):
            ws = by_item.get(k, [])
            p = prepared[i]
            if "topic" in p.tasks and ws:
                read = ws[:cap] if cap is not None else ws
                topic_rows.append(i)
                topic_probs.append(pool([softmax(logits[w]["topic"]) for w in read],
                                        [len(windows[w]) for w in read]))
            if "ner" in p.tasks:
                results[i]["entities"] = self._entities(p.norm, [windows[w] for w in ws],
                                                        [logits[w]["ner"] for w in ws])
        if topic_rows:
            texts = [prepared[i].norm.original for i in topic_rows]
            for i, out in zip(topic_rows, self._decide("topic", np.stack(topic_probs), texts)):
                results[i]["topic"] = out

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
        windows = self._stance_windows(windows)
        logits = self._forward_windows(windows, ("stance",))
        by_pair: dict[int, list[int]] = {}
        for w, win in enumerate(windows):
            by_pair.setdefault(win.target, []).append(w)
        rows, probs_per_pair = [], []
        for pair, (i, t) in enumerate(owners):
            ws = by_pair.get(pair, [])
            if not ws:
                continue
            probs = [softmax(logits[w]["stance"]) for w in ws]
            weights = [len(windows[w]) for w in ws]
            if self.schema.stance_pool == "evidence":
                weights = evidence_weights(probs, self.schema.tasks["stance"])
            rows.append((i, t))
            probs_per_pair.append(pool(probs, weights))
        if not rows:
            return
        texts = [prepared[i].norm.original for i, _ in rows]
        targets = [prepared[i].targets[t] for i, t in rows]
        for (i, t), out in zip(rows, self._decide("stance", np.stack(probs_per_pair), texts, targets)):
            results[i]["stance"].append({"target": prepared[i].targets[t], **out})

    def _stance_windows(self, windows: list[Window]) -> list[Window]:
        """The windows stance reads per (article, target): ``schema.stance_windows`` of them (None:
        all), chosen in reading order or by evidence (see ModelSchema), as the model was trained."""
        cap = self.schema.stance_windows
        if cap is None:
            return windows
        if self.schema.stance_select == "evidence":
            ranked = evidence_ranked(windows)
            keep = sorted(i for idx in ranked.values() for i in idx[:cap])
            return [windows[i] for i in keep]
        return first_windows(windows, cap, key=lambda w: w.target)

    def _decide(self, task: str, p_encoder: np.ndarray, texts: list[str],
                targets: list[str] | None = None) -> list[dict]:
        """Label and scores per row from the encoder's pooled probabilities, blended with the
        task's hybrid head when the model has one."""
        labels = self.schema.tasks[task]
        head = self.hybrid.get(task)
        parts: dict[str, np.ndarray] = {"encoder": p_encoder}
        final = p_encoder
        if head is not None:
            parts["linear"] = head.linear.proba(fields_for(task, texts, targets))
            parts["blend"], with_offsets = head.blend(p_encoder, parts["linear"], texts)
            final = with_offsets if self.offsets else parts["blend"]
        out = []
        for r in range(len(final)):
            best = int(final[r].argmax())
            res = {"label": labels[best], "score": float(final[r][best]),
                   "scores": {lab: float(final[r][j]) for j, lab in enumerate(labels)}}
            if self.keep_parts:
                res["parts"] = {name: {lab: float(v[r][j]) for j, lab in enumerate(labels)}
                                for name, v in parts.items()}
            out.append(res)
        return out

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
        word_probs = np.zeros((len(spans), len(labels)))
        covered = counts > 0
        word_probs[covered] = acc[covered] / counts[covered][:, None]
        word_probs[~covered, labels.index("O")] = 1.0  # a word no window reached (cannot happen) is O
        tags = bio_viterbi(word_probs, labels) if self.ner_decoding == "viterbi" else word_probs.argmax(1).tolist()
        entities, current = [], None
        for w, t in enumerate(tags):
            tag, score = labels[t], float(word_probs[w, t])
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
