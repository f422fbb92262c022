"""Variants of the hybrid topic head's linear part on the same features, scored on full ant21 dev.

The shipped linear part (``khabar.training.hybrid.fit_linear``) is hashed TF-IDF (word 1-2 +
char_wb 2-5 n-grams) with an SGD log-loss classifier. This sweep asks whether another linear
classifier on those features, trained on all of ant21's training articles, would give the blend
a stronger partner: each variant's macro-F1 on the dev articles, and its fit time.

    python -m benchmarks.topic_linear --data-dir ../shared/data

Features are computed once (about 2 minutes on 2 cores); each variant then fits in under a minute.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _articles(path: Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    texts = [f"{r['title']}\n{r['text']}" if r.get("title") else r["text"] for r in rows]
    return texts, np.array([r["label"] for r in rows])


def _nb_svm(x_train, y_train, x_dev, classes: list[str]) -> np.ndarray:
    """One-vs-rest NB-SVM (Wang & Manning 2012): features scaled by each class's log-count ratio."""
    from scipy.sparse import diags
    from sklearn.linear_model import SGDClassifier

    present = x_train.copy()
    present.data[:] = 1.0
    scores = []
    for c in classes:
        pos = y_train == c
        p = np.asarray(present[pos].sum(0)).ravel() + 1.0
        q = np.asarray(present[~pos].sum(0)).ravel() + 1.0
        ratio = diags(np.log((p / p.sum()) / (q / q.sum())).astype(np.float32))
        clf = SGDClassifier(loss="log_loss", alpha=3e-6, class_weight="balanced", max_iter=30, tol=1e-4,
                            random_state=13).fit(x_train @ ratio, pos)
        scores.append(clf.decision_function(x_dev @ ratio))
    return np.array(classes)[np.vstack(scores).argmax(0)]


def main(argv: list[str] | None = None) -> int:
    """Print each variant's dev macro-F1; return 2 when the data is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"),
                        help="folder holding topic/ant21/{train,dev}.jsonl (default ../shared/data)")
    args = parser.parse_args(argv)
    folder = args.data_dir / "topic" / "ant21"
    if not (folder / "train.jsonl").exists() or not (folder / "dev.jsonl").exists():
        print(f"topic_linear: {folder} lacks train.jsonl or dev.jsonl", file=sys.stderr)
        return 2

    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import f1_score
    from sklearn.svm import LinearSVC

    from khabar.models.hybrid import HashedTfidf, fields_for

    start = time.perf_counter()
    train_texts, y_train = _articles(folder / "train.jsonl")
    dev_texts, y_dev = _articles(folder / "dev.jsonl")
    train_fields, dev_fields = fields_for("topic", train_texts), fields_for("topic", dev_texts)
    features = HashedTfidf("topic").fit(train_fields)
    x_train, x_dev = features.transform(train_fields), features.transform(dev_fields)
    print(f"features: {x_train.shape[0]:,} train / {x_dev.shape[0]:,} dev articles, "
          f"{time.perf_counter() - start:.0f} s", flush=True)

    def sgd(alpha: float, **kw):
        opts = {"loss": "log_loss", "class_weight": "balanced", **kw}
        return lambda: SGDClassifier(alpha=alpha, max_iter=30, tol=1e-4, random_state=13, **opts)

    variants = {
        "SGD log-loss, alpha 2e-6, balanced (shipped)": sgd(2e-6),
        "SGD log-loss, alpha 1e-6": sgd(1e-6),
        "SGD log-loss, alpha 5e-6": sgd(5e-6),
        "SGD log-loss, alpha 1e-5": sgd(1e-5),
        "SGD log-loss, alpha 2e-6, unweighted": sgd(2e-6, class_weight=None),
        "SGD modified Huber, alpha 1e-5": sgd(1e-5, loss="modified_huber"),
        "LinearSVC C=0.3, balanced": lambda: LinearSVC(C=0.3, class_weight="balanced"),
        "LinearSVC C=1.0, balanced": lambda: LinearSVC(C=1.0, class_weight="balanced"),
    }
    print("| linear part on the shipped features | ant21 dev macro-F1 | fit s |\n|---|---:|---:|")
    for name, make in variants.items():
        t = time.perf_counter()
        pred = make().fit(x_train, y_train).predict(x_dev)
        print(f"| {name} | {f1_score(y_dev, pred, average='macro'):.3f} | {time.perf_counter() - t:.0f} |", flush=True)
    t = time.perf_counter()
    pred = _nb_svm(x_train, y_train, x_dev, sorted(set(y_train.tolist())))
    print(f"| NB-SVM one-vs-rest | {f1_score(y_dev, pred, average='macro'):.3f} | {time.perf_counter() - t:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
