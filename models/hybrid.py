"""Hybrid heads: a TF-IDF linear model beside the encoder, a stacker over both, decision offsets.

On Arabic news a linear model over word and character n-grams, trained on every labelled row,
is as good as a fine-tuned small encoder on topic and close on stance; the two err differently,
so a small stacker over both probability vectors beats either. This module holds what runs at
prediction time and how it is stored; fitting lives in ``khabar.training.hybrid``.

Storage runs no code on load: ``hybrid/manifest.json`` (parameters, label order, stacker and
offsets as numbers, the sha256 of each array file) and one ``.npz`` of plain arrays per task,
read with ``allow_pickle=False``. A file whose sha256 differs from the manifest is refused.
Features are hashed (no vocabulary to store): the arrays are the inverse document frequencies
and the classifier weights of the feature columns seen in training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from khabar.models.files import sha256_file
from khabar.models.normalize import normalize

HYBRID_DIR = "hybrid"
MANIFEST = "manifest.json"
FORMAT = 2  # 2: one stacker per family; format 1 (one stacker for every row) still loads
# The first characters of an article carry its topic and most stance cues; bounding them keeps
# the linear part a few milliseconds per article.
MAX_CHARS = 4000

# One hashed block per (field, analyzer): (field, analyzer, ngram range, log2 of its columns).
BLOCKS = {
    "topic": (("text", "word", (1, 2), 20), ("text", "char_wb", (2, 5), 20)),
    "stance": (("target", "word", (1, 2), 18), ("target", "char_wb", (2, 5), 18),
               ("text", "word", (1, 2), 20), ("text", "char_wb", (2, 5), 20)),
}
# How much of the target the text repeats (char 3-4-grams): tells "unrelated" apart.
OVERLAP_BITS = 18
# Stance rows come in two kinds that want different blends: short pairs (a headline or a tweet
# against a claim: ANS and Mawqif texts are all under 330 characters) and whole articles (Baly:
# median 4,200 characters, 5% under 900). Each family gets its own stacker and offsets; a
# single pooled blend, dominated by the short pairs, pushed Baly's articles off `unrelated`.
LONG_TEXT_CHARS = 600
FAMILIES = {"topic": ("all",), "stance": ("short", "long")}


def family_of(task: str, text: str) -> str:
    """Which of the task's blend families a row belongs to (by the length of its raw text)."""
    if task != "stance":
        return "all"
    return "long" if len(text) >= LONG_TEXT_CHARS else "short"


class HybridError(RuntimeError):
    """Hybrid parts that cannot be loaded or used; the message says which file and why."""


def clean(text: str) -> str:
    """The text the linear part reads: normalized as the encoder's input, bounded in length."""
    return normalize(text[: MAX_CHARS * 2]).text[:MAX_CHARS]


def _hasher(analyzer: str, ngrams: tuple[int, int], bits: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    extra = {"token_pattern": r"(?u)\b\w+\b"} if analyzer == "word" else {}
    return HashingVectorizer(analyzer=analyzer, ngram_range=tuple(ngrams), n_features=2 ** bits,
                             alternate_sign=False, norm=None, **extra)


def _l2_rows(x):
    from sklearn.preprocessing import normalize as l2

    return l2(x, norm="l2", copy=False)


class HashedTfidf:
    """Hashed word and character n-gram counts, sublinear tf, idf, L2 per block, side by side.

    ``idf`` is per block a dense vector over the block's columns (1.0 where a column was never
    seen: such columns carry no weight in the classifier anyway).
    """

    def __init__(self, task: str, idf: list[np.ndarray] | None = None) -> None:
        if task not in BLOCKS:
            raise HybridError(f"no linear features for task {task!r}")
        self.task = task
        self.blocks = BLOCKS[task]
        self.idf = idf
        self._hashers = [_hasher(a, n, b) for _, a, n, b in self.blocks]
        self._overlap = _hasher("char_wb", (3, 4), OVERLAP_BITS) if task == "stance" else None

    @property
    def n_features(self) -> int:
        return sum(2 ** b for *_, b in self.blocks) + (1 if self._overlap is not None else 0)

    def _counts(self, fields: dict[str, list[str]]) -> list:
        out = []
        for (name, *_), hasher in zip(self.blocks, self._hashers):
            x = hasher.transform(fields[name]).tocsr().astype(np.float32)
            x.data = 1.0 + np.log(x.data)  # sublinear tf
            out.append(x)
        return out

    def fit(self, fields: dict[str, list[str]]) -> "HashedTfidf":
        """Learn idf (smoothed, as scikit-learn's TfidfTransformer) from the training texts."""
        counts = self._counts(fields)
        self.idf = []
        for x in counts:
            n = x.shape[0]
            df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)
            self.idf.append((np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32))
        return self

    def transform(self, fields: dict[str, list[str]]):
        """The feature matrix (CSR, float32) of parallel field lists."""
        from scipy.sparse import csr_matrix, diags, hstack

        if self.idf is None:
            raise HybridError("features used before fit")
        blocks = [_l2_rows(x @ diags(idf)) for x, idf in zip(self._counts(fields), self.idf)]
        if self._overlap is not None:
            a = _l2_rows(self._overlap.transform(fields["target"]).astype(np.float32))
            b = _l2_rows(self._overlap.transform(fields["text"]).astype(np.float32))
            cosine = np.asarray(a.multiply(b).sum(axis=1)).reshape(-1, 1)
            blocks.append(csr_matrix(cosine * 3.0))  # scaled: one dense signal among many
        return hstack(blocks, format="csr", dtype=np.float32)


def fields_for(task: str, texts: list[str], targets: list[str] | None = None) -> dict[str, list[str]]:
    """Raw article texts (and stance targets) as the cleaned fields the features read."""
    out = {"text": [clean(t) for t in texts]}
    if task == "stance":
        out["target"] = [clean(t) for t in (targets or [])]
    return out


@dataclass
class LinearPart:
    """A multinomial linear classifier over :class:`HashedTfidf` features."""

    task: str
    labels: list[str]
    features: HashedTfidf
    columns: np.ndarray      # int64 feature columns with a weight
    weights: np.ndarray      # float32 [len(columns), n_labels]
    intercept: np.ndarray    # float32 [n_labels]
    _matrix: object = field(default=None, repr=False)

    def _weight_matrix(self):
        from scipy.sparse import csr_matrix

        if self._matrix is None:
            n = self.features.n_features
            rows = np.repeat(self.columns, len(self.labels))
            cols = np.tile(np.arange(len(self.labels)), len(self.columns))
            self._matrix = csr_matrix((self.weights.reshape(-1), (rows, cols)), shape=(n, len(self.labels)))
        return self._matrix

    def proba(self, fields: dict[str, list[str]]) -> np.ndarray:
        """Class probabilities [n, labels] (softmax of the linear scores)."""
        x = self.features.transform(fields)
        z = np.asarray((x @ self._weight_matrix()).todense()) + self.intercept
        return softmax(z)


@dataclass
class Stacker:
    """Multinomial logistic regression over [log p_encoder, log p_linear], plus decision offsets
    added to its log-probabilities (fitted for macro-F1 on held-out rows)."""

    coef: np.ndarray        # [labels, 2 * labels]
    intercept: np.ndarray   # [labels]
    offsets: np.ndarray     # [labels]

    def proba(self, p_encoder: np.ndarray, p_linear: np.ndarray, *, offsets: bool = True) -> np.ndarray:
        """Blended probabilities [n, labels]; with ``offsets`` the decision shift is included."""
        z = stack_features(p_encoder, p_linear) @ self.coef.T + self.intercept
        if offsets:
            z = z + self.offsets
        return softmax(z)

    def apply_offsets(self, blended: np.ndarray) -> np.ndarray:
        """The offsets applied to probabilities already blended without them (the same result as
        ``proba(..., offsets=True)``: softmax(z + o) == softmax(log softmax(z) + o))."""
        return softmax(np.log(np.clip(blended, 1e-300, 1.0)) + self.offsets)


def stack_features(p_encoder: np.ndarray, p_linear: np.ndarray) -> np.ndarray:
    """The stacker's input: log-probabilities of both parts side by side."""
    eps = 1e-6
    return np.hstack([np.log(np.clip(p_encoder, eps, 1.0)), np.log(np.clip(p_linear, eps, 1.0))])


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def encoder_only(n_labels: int, offsets: np.ndarray | None = None) -> Stacker:
    """A stacker that passes the encoder's probabilities through (softmax(log p) == p), with
    optional decision offsets: the choice for a family where blending does not help."""
    coef = np.hstack([np.eye(n_labels), np.zeros((n_labels, n_labels))])
    return Stacker(coef, np.zeros(n_labels), np.zeros(n_labels) if offsets is None else offsets)


@dataclass
class HybridHead:
    """The linear part of one task and one stacker per family of rows (:func:`family_of`)."""

    linear: LinearPart
    stackers: dict[str, Stacker]
    info: dict

    @property
    def labels(self) -> list[str]:
        return self.linear.labels

    def blend(self, p_encoder: np.ndarray, p_linear: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(blend without offsets, blend with offsets) per row, each row through the stacker of
        its family; a family without a stacker keeps the encoder's probabilities."""
        plain, final = p_encoder.copy(), p_encoder.copy()
        families = np.array([family_of(self.linear.task, t) for t in texts])
        for fam, stacker in self.stackers.items():
            m = families == fam
            if m.any():
                plain[m] = stacker.proba(p_encoder[m], p_linear[m], offsets=False)
                final[m] = stacker.apply_offsets(plain[m])
        return plain, final


def hybrid_info(heads: dict[str, "HybridHead"]) -> dict:
    """What GET /info shows of a model's hybrid heads: the parts and how they are weighed."""
    out = {}
    for task, head in heads.items():
        k = len(head.labels)
        families = {}
        for fam, st in head.stackers.items():
            families[fam] = {
                # The stacker's weight on each part's log-probability of a label for that label.
                "weights": {"encoder": np.diag(st.coef[:, :k]).round(3).tolist(),
                            "linear": np.diag(st.coef[:, k:]).round(3).tolist()},
                "offsets": st.offsets.round(3).tolist(),
                "choice": head.info.get("choices", {}).get(fam),
            }
        out[task] = {
            "parts": ["encoder", "linear"],
            "labels": head.labels,
            "families": families,
            "long_text_chars": LONG_TEXT_CHARS if len(FAMILIES.get(task, ())) > 1 else None,
            "linear": head.info.get("linear"), "linear_train_rows": head.info.get("linear_train_rows"),
            "blend_rows": head.info.get("blend_rows"),
        }
    return out


# -- storage ---------------------------------------------------------------------------------------
def save_hybrid(heads: dict[str, HybridHead], folder: Path) -> None:
    """Write ``heads`` into ``folder/hybrid``: one npz of arrays per task and the manifest."""
    out = Path(folder) / HYBRID_DIR
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"format": FORMAT, "tasks": {}}
    for task, head in heads.items():
        arrays = {"columns": head.linear.columns.astype(np.int64),
                  "weights": head.linear.weights.astype(np.float32),
                  "intercept": head.linear.intercept.astype(np.float32)}
        for i, idf in enumerate(head.linear.features.idf or []):
            arrays[f"idf_{i}"] = idf.astype(np.float32)
        path = out / f"{task}.npz"
        np.savez_compressed(path, **arrays)
        manifest["tasks"][task] = {
            "labels": head.labels,
            "file": path.name,
            "sha256": sha256_file(path),
            "blocks": [list(b[:2]) + [list(b[2]), b[3]] for b in BLOCKS[task]],
            "stackers": {fam: {"coef": st.coef.tolist(), "intercept": st.intercept.tolist(),
                               "offsets": st.offsets.tolist()} for fam, st in head.stackers.items()},
            "info": head.info,
        }
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True),
                                encoding="utf-8")


def load_hybrid(folder: Path) -> dict[str, HybridHead]:
    """Read the hybrid parts of a stored model (empty dict when it has none).

    Raises :class:`HybridError` when the manifest is unreadable, a file is missing, its sha256
    does not match the manifest (tampered or damaged), or it would need pickle to load.
    """
    base = Path(folder) / HYBRID_DIR
    if not (base / MANIFEST).exists():
        return {}
    try:
        manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HybridError(f"{base / MANIFEST} cannot be read: {err}") from None
    if manifest.get("format") not in (1, FORMAT):
        raise HybridError(f"{base / MANIFEST}: format {manifest.get('format')!r}, expected 1 or {FORMAT}")
    heads = {}
    for task, spec in manifest.get("tasks", {}).items():
        path = base / spec["file"]
        if path.name != spec["file"] or not path.exists():
            raise HybridError(f"hybrid part {spec['file']!r} of {task} is missing from {base}")
        digest = sha256_file(path)
        if digest != spec.get("sha256"):
            raise HybridError(f"{path} does not match its manifest (sha256 {digest[:12]}..., recorded "
                              f"{str(spec.get('sha256'))[:12]}...): refusing a changed or damaged file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as err:  # object arrays need pickle: refused
            raise HybridError(f"{path} cannot be loaded without pickle: {err}") from None
        blocks = tuple((f, a, tuple(n), b) for f, a, n, b in spec["blocks"])
        if blocks != BLOCKS.get(task):
            raise HybridError(f"{path}: stored features {blocks} differ from this khabar's {BLOCKS.get(task)}")
        idf = [arrays[f"idf_{i}"] for i in range(len(blocks))]
        labels = list(spec["labels"])
        linear = LinearPart(task, labels, HashedTfidf(task, idf), arrays["columns"], arrays["weights"],
                            arrays["intercept"])
        # Format 1 stored one stacker for every row: it serves every family.
        stored = spec["stackers"] if "stackers" in spec else {f: spec["stacker"] for f in FAMILIES[task]}
        unknown = set(stored) - set(FAMILIES[task])
        if unknown:
            raise HybridError(f"{base / MANIFEST}: {task} has stackers for unknown families {sorted(unknown)}")
        stackers = {fam: Stacker(np.asarray(st["coef"], dtype=np.float64),
                                 np.asarray(st["intercept"], dtype=np.float64),
                                 np.asarray(st["offsets"], dtype=np.float64)) for fam, st in stored.items()}
        heads[task] = HybridHead(linear, stackers, spec.get("info", {}))
    return heads
