"""Weight averaging of the last epochs' ends (checkpoint averaging).

Why: one encoder serves three tasks that peak at different epochs (NER at epoch 2, stance still
climbing at 3 in sessions 5-6), and a run can keep only one set of weights. The mean of the last
epochs' weights sits between their optima and often scores above each on all tasks; it costs no
training, only one more dev evaluation. The loop keeps it only when its dev score is higher.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from khabar.models.files import atomic_path

_NAME = re.compile(r"^epoch-(\d{3})\.safetensors$")


def epoch_weights_path(run_dir: Path, epoch: int) -> Path:
    """Where the weights at the end of ``epoch`` (1-based) are kept for averaging."""
    return run_dir / f"epoch-{epoch:03d}.safetensors"


def save_epoch_weights(run_dir: Path, model: torch.nn.Module, epoch: int, keep: int) -> Path:
    """Write this epoch's weights atomically; delete those older than the last ``keep`` epochs."""
    from safetensors.torch import save_file

    path = epoch_weights_path(run_dir, epoch)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    for old in run_dir.glob("epoch-*.safetensors"):
        match = _NAME.match(old.name)
        if match and int(match.group(1)) <= epoch - keep:
            old.unlink(missing_ok=True)
    return path


def kept_epochs(run_dir: Path) -> list[int]:
    """The epochs whose end weights are on disk, in order."""
    found = (_NAME.match(p.name) for p in run_dir.glob("epoch-*.safetensors"))
    return sorted(int(m.group(1)) for m in found if m)


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors over ``paths``.

    Integer buffers (position ids) are identical in every file and are taken from the last.
    Accumulates in float64 so the mean of a few float32 files does not drift.
    """
    from safetensors.torch import load_file

    if not paths:
        raise ValueError("no weight files to average")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        state = load_file(str(path))
        if total and state.keys() != total.keys():
            raise ValueError(f"{path.name} holds other tensors than {paths[0].name}")
        for name, tensor in state.items():
            last[name] = tensor
            if not tensor.is_floating_point():
                total.setdefault(name, tensor)
            elif name in total:
                total[name] += tensor.double()
            else:
                total[name] = tensor.double()
    return {name: (total[name] / len(paths)).to(last[name].dtype) if last[name].is_floating_point() else last[name]
            for name in last}
