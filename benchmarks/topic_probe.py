"""Does a stored model's topic head lack articles, or does its encoder lack the signal?

The encoder's topic head is trained on a subsample (offline.yaml: 2,500 of ant21's 24,030
articles). This probe embeds the first window (title and lead) of every training article with the
model's fine-tuned encoder and fits a logistic regression on the pooled vectors of all of them.
If the probe beats the head, the head is starved of articles and could be refitted on all of them;
if not, the encoder's representation is the limit. Scored on a slice of the *training* file that
the encoder never trained on (fixed by hash of id), never on dev, next to the hybrid head's linear
part fitted on the same rows, and the two mean-log-probability blends (head + linear, probe + linear).

    python -m benchmarks.topic_probe --model khabar:TAG --train ../shared/data/topic/ant21/train.jsonl

The encoder pass is the cost: about 20 minutes for 24,030 articles on 2 cores (fp32 torch).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SLICE_SEED = 99  # not the training seed (13) nor its blend seed, so the slice is its own draw


def _first_window_embeddings(loaded, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled last-layer states of each text's first window, and the topic head's logits."""
    import torch
    from tqdm import tqdm

    from khabar.models.multitask import mean_pool
    from khabar.models.predictor import first_windows
    from khabar.models.windows import collate, length_sorted_batches, make_windows

    windows = first_windows(make_windows(loaded.tokenizer, texts, max_length=loaded.schema.max_length,
                                         stride=loaded.schema.stride), 1, key=lambda w: w.item)
    model = loaded.model.eval()
    emb = np.zeros((len(texts), model.encoder.config.hidden_size), np.float32)
    logits = np.zeros((len(texts), len(loaded.schema.tasks["topic"])), np.float32)
    with torch.inference_mode():
        for idx in tqdm(length_sorted_batches(windows, batch_size), desc="encoding first windows", unit="batch"):
            batch = collate([windows[i] for i in idx], loaded.tokenizer.pad_token_id)
            pooled = mean_pool(model.encoder(**batch).last_hidden_state, batch["attention_mask"])
            items = [windows[i].item for i in idx]
            emb[items] = pooled.numpy()
            logits[items] = model.heads["topic"](pooled).numpy()
    return emb, logits


def main(argv: list[str] | None = None) -> int:
    """Print the probe table; return 2 when the file or the model is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="stored model tag with a topic head (khabar:TAG)")
    parser.add_argument("--train", type=Path, default=Path("../shared/data/topic/ant21/train.jsonl"),
                        help="topic training file (JSON lines; default ant21's)")
    parser.add_argument("--slice", type=float, default=0.15,
                        help="share of the file held out to score on (default 0.15)")
    args = parser.parse_args(argv)
    if not args.train.exists():
        print(f"topic_probe: no file {args.train}", file=sys.stderr)
        return 2

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    from khabar.models.hybrid import softmax
    from khabar.models.normalize import normalize
    from khabar.models.store import ModelStoreError, load_model
    from khabar.training.config import Source, from_dict
    from khabar.training.data import hash_unit, read_source, topic_text
    from khabar.training.hybrid import encoder_keys, example_fields, fit_linear
    from khabar.training.merge import text_key

    try:
        loaded = load_model(args.model)
    except ModelStoreError as err:
        print(f"topic_probe: {err}", file=sys.stderr)
        return 2
    if "topic" not in loaded.schema.tasks:
        print(f"topic_probe: {loaded.tag} has no topic head", file=sys.stderr)
        return 2
    labels = list(loaded.schema.tasks["topic"])
    learnt = encoder_keys(from_dict(loaded.training["config"], where=loaded.tag), "topic")
    rows = [e for e in read_source("topic", Source(path=str(args.train)), seed=13).examples if e.label in labels]
    in_slice = np.array([hash_unit(e.id, SLICE_SEED) < args.slice for e in rows])
    seen = np.array([text_key("topic", e) in learnt for e in rows])
    score_rows, fit_rows = in_slice & ~seen, ~in_slice
    y = np.array([e.label for e in rows])
    if len(set(y[fit_rows])) < 2 or not score_rows.any():
        print("topic_probe: too few rows outside the encoder's training set to fit and score on", file=sys.stderr)
        return 2
    print(f"{len(rows):,} articles: probe fitted on {fit_rows.sum():,}, scored on {score_rows.sum():,} "
          f"the encoder never trained on ({seen.sum():,} it did)", flush=True)

    t = time.perf_counter()
    emb, logits = _first_window_embeddings(loaded, [normalize(topic_text(e)).text for e in rows])
    print(f"encoded in {time.perf_counter() - t:.0f} s", flush=True)

    def f1(p: np.ndarray) -> float:
        return float(f1_score(y[score_rows], np.array(labels)[p.argmax(1)], average="macro"))

    def log(p: np.ndarray) -> np.ndarray:
        return np.log(np.clip(p, 1e-6, 1.0))

    table = {"topic head (first window)": softmax(logits[score_rows])}
    scaler = StandardScaler().fit(emb[fit_rows])
    for c in (0.1, 1.0):
        probe = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        probe.fit(scaler.transform(emb[fit_rows]), y[fit_rows])
        proba = np.zeros((int(score_rows.sum()), len(labels)))  # a label the fit rows lack: 0
        proba[:, [labels.index(c_) for c_ in probe.classes_]] = probe.predict_proba(scaler.transform(emb[score_rows]))
        table[f"probe on all {fit_rows.sum():,} articles, C={c}"] = proba
    linear = fit_linear("topic", [e for e, k in zip(rows, fit_rows) if k], labels)
    p_linear = linear.proba(example_fields("topic", [e for e, k in zip(rows, score_rows) if k]))
    table["hybrid linear part (TF-IDF)"] = p_linear
    best_probe = max((k for k in table if k.startswith("probe")), key=lambda k: f1(table[k]))
    table["head + linear (mean log-probability)"] = softmax(log(table["topic head (first window)"]) + log(p_linear))
    table["best probe + linear (mean log-probability)"] = softmax(log(table[best_probe]) + log(p_linear))
    print(f"| {loaded.tag} on {score_rows.sum():,} held-out training articles | macro-F1 |\n|---|---:|")
    for name, proba in table.items():
        print(f"| {name} | {f1(proba):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
