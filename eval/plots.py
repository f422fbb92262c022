"""The report's figures as PNG bytes (matplotlib, Agg): confusion matrices, per-label F1 bars,
reliability diagrams and entity-type F1. Bytes, not files, so the HTML can embed them."""
from __future__ import annotations

import io

import numpy as np

_COLORS = ["#2f6db5", "#9a9a9a", "#e08a1e", "#4a9a5a"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def confusion_png(labels: list[str], matrix: list[list[int]], title: str) -> bytes:
    """Row-normalized heat map (gold rows, predicted columns) with counts in the cells."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    cols = list(labels) + (["(other)"] if m.shape[1] > len(labels) and m[:, -1].sum() else [])
    m = m[:, : len(cols)]
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.5 * max(len(cols), 3)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    ax.title.set_fontsize(9)
    return _png(fig)


def grouped_bars_png(series: dict[str, dict[str, float]], title: str, ylabel: str = "F1") -> bytes:
    """Bars per category (label or entity type), one colour per system."""
    plt = _plt()
    cats = list(dict.fromkeys(c for s in series.values() for c in s))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(4.2, 0.75 * len(cats) + 1.5), 3.4))
    for k, (name, values) in enumerate(series.items()):
        x = np.arange(len(cats)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, [values.get(c, 0.0) for c in cats], width, label=name, color=_COLORS[k % len(_COLORS)])
    ax.set_xticks(range(len(cats)), cats, rotation=25, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), ylabel=ylabel, title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1, 1.0), framealpha=0.8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def reliability_png(calibrations: dict[str, dict]) -> bytes:
    """One reliability diagram per set: accuracy against confidence per bin, bin sizes shaded."""
    plt = _plt()
    n = len(calibrations)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False)
    for ax, (name, cal) in zip(axes[0], calibrations.items()):
        bins = cal["bins"]
        centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
        width = bins[0]["hi"] - bins[0]["lo"]
        total = max(sum(b["n"] for b in bins), 1)
        ax.bar(centers, [b["n"] / total for b in bins], width, color="#dddddd", label="share of examples")
        ax.bar(centers, [b["accuracy"] or 0 for b in bins], width * 0.6, color=_COLORS[0],
               alpha=0.85, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="#c0392b", lw=1, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{name}\nECE {cal['ece']:.3f}")
        ax.title.set_fontsize(9)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    return _png(fig)
