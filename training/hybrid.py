"""Fitting hybrid heads (models/hybrid.py): linear parts on all training rows, a stacker and
decision offsets on rows the encoder never trained on.

For each classification task of a model:
1. *All rows*: every training source read without its ``limit`` (topic: the 24k articles, not
   the encoder's subsample); source holdouts (Mawqif's dev slice) stay out. A warm-started run
   (``init_from``) adds the sources of the models it started from, so a retrained candidate's
   linear part still sees every article its base could.
2. *Blend rows*: the rows of (1) the encoder did not train on (outside the subsample, or in the
   task's ``blend_holdout``), at most ``max_blend_rows`` per source (fixed by hash of id). "Did
   not train on" covers the whole ``init_from`` lineage, compared by normalized text: a row the
   starting model learnt is no fairer a test of the encoder than one this run learnt.
3. A linear model fitted on (1) minus (2) scores the blend rows; the encoder scores them too; a
   multinomial logistic regression over both log-probability vectors is the stacker.
4. Per-class decision offsets maximise macro-F1 (mean over sources, each over its own labels) on
   cross-fitted stacker outputs.
5. Per family of rows (models.hybrid.family_of: stance splits short pairs from whole articles),
   four ways to decide are scored out of fold -- encoder alone, encoder + offsets, blend, blend +
   offsets (offsets themselves fitted on the other folds); a way ships over a simpler one only if
   it is ahead by ``MARGIN`` and in ``CONFIDENCE`` of paired bootstrap resamples of the rows. The
   choice is refitted on all of the family's blend rows.
6. The linear model that ships is refitted on all of (1).
The dev sets a report shows are never used here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import numpy as np

from khabar.models.hybrid import (FAMILIES, HashedTfidf, HybridHead, LinearPart, Stacker, encoder_only,
                                  family_of, fields_for, stack_features)

CLASSIFICATION_TASKS = ("topic", "stance")
OFFSET_GRID = np.round(np.arange(-2.0, 2.01, 0.1), 2)
# Ways to decide, simplest first; a later one ships only if it beats the best earlier one by
# MARGIN of out-of-fold macro-F1 *and* does so in CONFIDENCE of paired bootstrap resamples of the
# family's rows. A fixed margin alone let a blend fitted on 269 Baly articles win by 0.016, well
# inside the noise of a macro-F1 over four labels, one of them 11 rows strong.
CHOICES = ("encoder", "encoder+offsets", "blend", "blend+offsets")
MARGIN = 0.005
CONFIDENCE = 0.9
BOOTSTRAP_ROUNDS = 300
# Sources with fewer rows than this in a family do not get their own place in the mean macro-F1.
MIN_GROUP_ROWS = 30


@dataclass
class BlendData:
    """One task's rows for hybrid fitting: every training row, and the blend rows with their
    source names."""

    all_rows: list
    blend: list
    blend_sources: list[str]


class LineageError(RuntimeError):
    """The models a run started from (``init_from``) cannot be read back, so which rows their
    encoder trained on is unknown."""


def lineage(cfg, *, max_depth: int = 32) -> list:
    """The training configs of the stored models ``cfg`` was warm-started from, nearest first
    (each stored model's ``training.json`` records its own ``init_from``)."""
    from khabar.models.store import ModelStoreError, model_path
    from khabar.training.config import ConfigError, from_dict

    chain, seen, tag = [], set(), cfg.init_from
    while tag:
        try:
            full, path = model_path(tag)
            raw = json.loads((path / "training.json").read_text(encoding="utf-8")).get("config")
        except (ModelStoreError, OSError, ValueError) as err:
            raise LineageError(f"cannot read the training config of {tag}: {err}") from err
        if not isinstance(raw, dict):
            raise LineageError(f"model {full} records no training config")
        if full in seen or len(chain) >= max_depth:
            raise LineageError(f"the init_from chain of {cfg.init_from} loops or is over {max_depth} deep")
        seen.add(full)
        try:
            chain.append(from_dict(raw, where=f"training config of {full}"))
        except ConfigError as err:
            raise LineageError(str(err)) from err
        tag = chain[-1].init_from
    return chain


def encoder_keys(cfg, task: str) -> set[str]:
    """Normalized texts of the rows ``cfg``'s encoder trained on for ``task`` (its sources with
    their limits, minus the blend holdout)."""
    from khabar.training.data import in_blend_holdout, read_source
    from khabar.training.merge import text_key

    spec = cfg.tasks.get(task)
    if spec is None:
        return set()
    keys = set()
    for src in spec.train:
        for e in read_source(task, src, seed=cfg.seed, repair_bio=cfg.repair_bio).examples:
            if not in_blend_holdout(e.id, cfg.seed, spec.blend_holdout):
                keys.add(text_key(task, e))
    return keys


def blend_data(cfg, task: str, *, max_blend_rows: int | None = None, ancestors: list | None = None,
               labels: list[str] | None = None, log=print) -> BlendData:
    """All training rows and the blend rows of ``task`` for config ``cfg`` (see module doc).

    ``ancestors`` are the configs of the models ``cfg`` started from (default: read from the store
    by :func:`lineage`); their rows join (1) only with a label in ``labels`` when that is given.
    ``max_blend_rows`` caps the blend rows per source (None: the config's ``blend_max_rows``).
    Raises :class:`LineageError` when an ancestor's config or data cannot be read.
    """
    if max_blend_rows is None:
        max_blend_rows = cfg.blend_max_rows
    from khabar.training.data import hash_unit, read_source
    from khabar.training.merge import text_key

    ancestors = lineage(cfg) if ancestors is None else ancestors
    trained = encoder_keys(cfg, task)
    for anc in ancestors:
        try:
            trained |= encoder_keys(anc, task)
        except Exception as err:  # a moved or deleted data file: the lineage is unknowable
            raise LineageError(f"cannot read what {anc.name!r} trained on for {task}: {err}") from err
    all_rows, blend, sources, have = [], [], [], set()
    for generation, gen_cfg in enumerate([cfg, *ancestors]):
        spec = gen_cfg.tasks.get(task)
        for src in (spec.train if spec is not None else []):
            full = read_source(task, replace(src, limit=None), seed=gen_cfg.seed, repair_bio=gen_cfg.repair_bio)
            rows = []
            for e in full.examples:
                key = text_key(task, e)
                # This run's own rows are kept as read (duplicates and all); an ancestor adds only
                # texts not seen yet, with a label this model knows.
                if generation and (key in have or (labels is not None and e.label not in labels)):
                    continue
                have.add(key)
                rows.append((key, e))
            outside = [e for key, e in rows if key not in trained]
            if len(outside) > max_blend_rows:
                keep = set(sorted((e.id for e in outside), key=lambda i: hash_unit(i, cfg.seed + 1))[:max_blend_rows])
                outside = [e for e in outside if e.id in keep]
            all_rows += [e for _, e in rows]
            blend += outside
            sources += [full.name] * len(outside)
            origin = f" (from {gen_cfg.name}, an init_from ancestor)" if generation else ""
            log(f"hybrid {task}: {full.name}{origin}: {len(rows)} training rows, {len(outside)} blend rows "
                f"no encoder in the lineage trained on")
    return BlendData(all_rows, blend, sources)


def example_fields(task: str, examples: list) -> dict[str, list[str]]:
    """The linear part's input fields for labelled examples (as the predictor builds them)."""
    from khabar.training.data import topic_text

    if task == "topic":
        return fields_for(task, [topic_text(e) for e in examples])
    return fields_for(task, [e.text for e in examples], [e.target for e in examples])


def fit_linear(task: str, examples: list, labels: list[str], *, seed: int = 13,
               alpha: float = 2e-6) -> LinearPart:
    """TF-IDF (hashed word 1-2 + char 2-5 n-grams) and an SGD log-loss linear model with balanced
    class weights, on ``examples``; weights for ``labels`` in that order."""
    from sklearn.linear_model import SGDClassifier

    fields = example_fields(task, examples)
    features = HashedTfidf(task).fit(fields)
    x = features.transform(fields)
    y = [e.label for e in examples]
    clf = SGDClassifier(loss="log_loss", alpha=alpha, class_weight="balanced", max_iter=30, tol=1e-4,
                        random_state=seed).fit(x, y)
    coef, intercept = _full_classes(clf.coef_, clf.intercept_, list(clf.classes_), labels)
    columns = np.flatnonzero(np.abs(coef).sum(axis=0) > 0)
    return LinearPart(task, list(labels), features, columns.astype(np.int64),
                      coef[:, columns].T.astype(np.float32).copy(), intercept.astype(np.float32))


def _full_classes(coef: np.ndarray, intercept: np.ndarray, classes: list[str],
                  labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Weights for every label in ``labels`` order: a binary model becomes two rows, a label the
    training rows never had gets no weight and a very low intercept."""
    if len(classes) == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, float(intercept[0])])
    full = np.zeros((len(labels), coef.shape[1]))
    bias = np.full(len(labels), -20.0)
    for i, c in enumerate(classes):
        full[labels.index(str(c))] = coef[i]
        bias[labels.index(str(c))] = intercept[i]
    return full, bias


def fit_stacker(p_encoder: np.ndarray, p_linear: np.ndarray, y: np.ndarray, labels: list[str]) -> Stacker:
    """Multinomial logistic regression over both parts' log-probabilities (offsets zero)."""
    from sklearn.linear_model import LogisticRegression

    x = stack_features(p_encoder, p_linear)
    present = sorted(set(y.tolist()))
    if len(present) == 1:  # nothing to learn a blend from: trust the encoder
        coef = np.hstack([np.eye(len(labels)), np.zeros((len(labels), len(labels)))])
        return Stacker(coef, np.zeros(len(labels)), np.zeros(len(labels)))
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    names = [labels[i] for i in clf.classes_]
    coef, intercept = _full_classes(clf.coef_, clf.intercept_, names, labels)
    return Stacker(coef, intercept, np.zeros(len(labels)))


def group_macro_f1(y: np.ndarray, pred: np.ndarray, groups: list[str]) -> float:
    """Mean over groups (sources) of macro-F1 over the labels present in that group's gold.

    A group under :data:`MIN_GROUP_ROWS` rows is left out of the mean while a larger one exists:
    one Baly claim among the short pairs once made a third of the figure a single 0-or-1, and
    with it the choice between encoder and blend.
    """
    from sklearn.metrics import f1_score

    groups_arr = np.asarray(groups)
    names = list(dict.fromkeys(groups))
    sizes = {g: int((groups_arr == g).sum()) for g in names}
    if any(n >= MIN_GROUP_ROWS for n in sizes.values()):
        names = [g for g in names if sizes[g] >= MIN_GROUP_ROWS]
    scores = []
    for g in names:
        m = groups_arr == g
        scores.append(f1_score(y[m], pred[m], labels=sorted(set(y[m].tolist())), average="macro",
                               zero_division=0))
    return float(np.mean(scores))


def bootstrap_win_rate(y: np.ndarray, pred: np.ndarray, other: np.ndarray, groups: list[str], *,
                       rounds: int = BOOTSTRAP_ROUNDS, seed: int = 13) -> float:
    """Share of paired bootstrap resamples of the rows (within each group) in which ``pred``'s
    macro-F1 (:func:`group_macro_f1`) is above ``other``'s: how sure a few hundred rows are that
    one way to decide is better, not just ahead by chance."""
    rng = np.random.default_rng(seed + 2)
    groups_arr = np.asarray(groups)
    members = [np.flatnonzero(groups_arr == g) for g in dict.fromkeys(groups)]
    wins = 0
    for _ in range(rounds):
        idx = np.concatenate([rng.choice(m, size=len(m), replace=True) for m in members])
        g = groups_arr[idx].tolist()
        wins += group_macro_f1(y[idx], pred[idx], g) > group_macro_f1(y[idx], other[idx], g)
    return wins / rounds


def fit_offsets(log_p: np.ndarray, y: np.ndarray, groups: list[str], rounds: int = 3) -> np.ndarray:
    """Per-class additive offsets on log-probabilities that maximise :func:`group_macro_f1`
    (coordinate ascent over a grid; ties keep the smaller shift)."""
    offsets = np.zeros(log_p.shape[1])
    best = group_macro_f1(y, (log_p + offsets).argmax(1), groups)
    for _ in range(rounds):
        moved = False
        for c in range(log_p.shape[1]):
            for v in sorted(OFFSET_GRID, key=abs):
                trial = offsets.copy()
                trial[c] = v
                score = group_macro_f1(y, (log_p + trial).argmax(1), groups)
                if score > best + 1e-9:
                    best, offsets, moved = score, trial, True
        if not moved:
            break
    return offsets


def crossfit_stacker_logp(p_encoder: np.ndarray, p_linear: np.ndarray, y: np.ndarray, labels: list[str],
                          folds: int = 5, seed: int = 13) -> np.ndarray:
    """Out-of-fold stacker log-probabilities of every blend row."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds
    out = np.zeros_like(p_encoder)
    for k in range(folds):
        test, train = fold == k, fold != k
        st = fit_stacker(p_encoder[train], p_linear[train], y[train], labels)
        out[test] = np.log(np.clip(st.proba(p_encoder[test], p_linear[test], offsets=False), 1e-9, 1.0))
    return out


def crossfit_offsets_logp(log_p: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5,
                          seed: int = 13) -> np.ndarray:
    """``log_p`` with decision offsets added, each fold's offsets fitted on the other folds (so the
    offsets are judged on rows they were not fitted on)."""
    rng = np.random.default_rng(seed + 1)
    fold = rng.permutation(len(y)) % folds
    groups_arr = np.asarray(groups)
    out = log_p.copy()
    for k in range(folds):
        test, train = fold == k, fold != k
        out[test] = log_p[test] + fit_offsets(log_p[train], y[train], groups_arr[train].tolist())
    return out


def choose(preds: dict[str, np.ndarray], y: np.ndarray, groups: list[str], *,
           seed: int = 13) -> tuple[str, dict[str, float]]:
    """The way to decide that ships (a key of ``preds``, which lists them simplest first) and each
    one's macro-F1: a way replaces the simpler ones only if it beats the best of them by
    :data:`MARGIN` and in :data:`CONFIDENCE` of paired bootstrap resamples."""
    names = list(preds)
    figures = {name: group_macro_f1(y, preds[name], groups) for name in names}
    choice = names[0]
    for k, name in enumerate(names[1:], start=1):
        best_simpler = max(names[:k], key=figures.get)
        if (figures[name] > figures[best_simpler] + MARGIN
                and bootstrap_win_rate(y, preds[name], preds[best_simpler], groups, seed=seed) >= CONFIDENCE):
            choice = name
    return choice, figures


def fit_family(p_encoder: np.ndarray, p_linear: np.ndarray, y: np.ndarray, groups: list[str],
               labels: list[str], *, seed: int = 13) -> tuple[Stacker, str, dict[str, float]]:
    """The stacker one family of rows ships with, the choice it embodies (:data:`CHOICES`), and
    every choice's out-of-fold macro-F1 (mean over sources)."""
    enc_logp = np.log(np.clip(p_encoder, 1e-9, 1.0))
    oof = crossfit_stacker_logp(p_encoder, p_linear, y, labels, seed=seed)
    candidates = {"encoder": enc_logp, "encoder+offsets": crossfit_offsets_logp(enc_logp, y, groups, seed=seed),
                  "blend": oof, "blend+offsets": crossfit_offsets_logp(oof, y, groups, seed=seed)}
    choice, figures = choose({name: candidates[name].argmax(1) for name in CHOICES}, y, groups, seed=seed)
    figures["linear"] = group_macro_f1(y, p_linear.argmax(1), groups)
    if choice.startswith("encoder"):
        offsets = fit_offsets(enc_logp, y, groups) if choice.endswith("offsets") else None
        return encoder_only(len(labels), offsets), choice, figures
    stacker = fit_stacker(p_encoder, p_linear, y, labels)
    if choice.endswith("offsets"):
        stacker.offsets = fit_offsets(oof, y, groups)
    return stacker, choice, figures


def fit_task(task: str, data: BlendData, p_encoder: np.ndarray, labels: list[str], *, seed: int = 13,
             log=print) -> tuple[HybridHead, dict]:
    """Fit one task's hybrid head; also return the blend-row figures per family and choice."""
    t0 = time.perf_counter()
    blend_ids = {id(e) for e in data.blend}
    rest = [e for e in data.all_rows if id(e) not in blend_ids]
    held = fit_linear(task, rest, labels, seed=seed)
    p_linear = held.proba(example_fields(task, data.blend))
    y = np.array([labels.index(e.label) for e in data.blend])
    families = np.array([family_of(task, e.text) for e in data.blend])
    sources = np.asarray(data.blend_sources)
    stackers, choices, figures = {}, {}, {}
    for fam in FAMILIES[task]:
        m = families == fam
        if not m.any():
            continue
        stackers[fam], choices[fam], figures[fam] = fit_family(
            p_encoder[m], p_linear[m], y[m], sources[m].tolist(), labels, seed=seed)
        log(f"hybrid {task} [{fam}: {int(m.sum())} rows of {', '.join(sorted(set(sources[m])))}] out-of-fold "
            f"macro-F1 " + ", ".join(f"{k} {v:.4f}" for k, v in figures[fam].items()) + f" -> {choices[fam]}")
    final = fit_linear(task, data.all_rows, labels, seed=seed)
    info = {"linear": "hashed tf-idf word 1-2 + char_wb 2-5, SGD log-loss, balanced",
            "linear_train_rows": len(data.all_rows), "blend_rows": len(data.blend),
            "blend_sources": sorted(set(data.blend_sources)), "stacker": "logistic regression over "
            "[log p_encoder, log p_linear], one per family of rows", "choices": choices,
            "offsets": {fam: dict(zip(labels, st.offsets.round(2).tolist())) for fam, st in stackers.items()},
            "blend_rows_macro_f1": figures, "fit_seconds": round(time.perf_counter() - t0, 1)}
    return HybridHead(final, stackers, info), figures


def encoder_probs(predictor, task: str, examples: list, labels: list[str], progress=None) -> np.ndarray:
    """The encoder's pooled probabilities [n, labels] for labelled examples (through the predictor,
    so windows and pooling are the service's)."""
    from khabar.training.scoring import predict_examples

    _, _, probs = predict_examples(predictor, task, examples, progress=progress)
    return np.array([[p[lab] for lab in labels] for p in probs])


def fit_hybrid(loaded, cfg, *, max_blend_rows: int | None = None, log=print) -> dict[str, HybridHead]:
    """Hybrid heads for every classification task of a loaded model, from its training config
    (``max_blend_rows`` per source; None: the config's ``blend_max_rows``, read by :func:`blend_data`)."""
    from tqdm.auto import tqdm

    from khabar.models.predictor import Predictor

    # The encoder alone: new heads are fitted on its probabilities, not on an older blend.
    predictor = Predictor.from_loaded(loaded, batch_size=32, with_hybrid=False)
    heads = {}
    for task in (t for t in CLASSIFICATION_TASKS if t in loaded.schema.tasks and t in cfg.tasks):
        labels = loaded.schema.tasks[task]
        try:
            data = blend_data(cfg, task, max_blend_rows=max_blend_rows, labels=labels, log=log)
        except LineageError as err:
            # A stacker fitted on rows the encoder may have learnt would trust it too much: none.
            log(f"hybrid {task}: skipped, the encoder alone decides: {err}")
            continue
        if not data.blend:
            log(f"hybrid {task}: no training rows outside the encoder's: skipped (set blend_holdout)")
            continue
        with tqdm(total=len(data.blend), desc=f"encoder on {task} blend rows", unit="ex",
                  dynamic_ncols=True) as bar:
            p_enc = encoder_probs(predictor, task, data.blend, labels, progress=bar.update)
        heads[task], _ = fit_task(task, data, p_enc, labels, seed=cfg.seed, log=log)
    return heads
