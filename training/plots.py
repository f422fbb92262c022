"""Training curves as a PNG: loss and the dev primary metric per epoch."""
from __future__ import annotations

from pathlib import Path


def plot_curves(history: list[dict], out: Path) -> Path:
    """Draw train loss and every dev set's primary metric against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from khabar.training.scoring import PRIMARY

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax1.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    series: dict[str, list] = {}
    for h in history:
        for task, sets in (h.get("dev") or {}).items():
            for name, m in sets.items():
                series.setdefault(f"{task}/{name} {PRIMARY[task]}", []).append((h["epoch"], m[PRIMARY[task]]))
    for label, points in series.items():
        ax2.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax2.set(title="dev", xlabel="epoch", ylabel="F1", ylim=(0, 1))
    if series:
        ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
