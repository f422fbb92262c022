"""Resumable checkpoints of a training run.

A checkpoint is a folder ``ckpt-<n>`` with the weights (safetensors), optimizer + scheduler +
RNG state (``torch.save`` of tensors and plain values, loaded with ``weights_only=True``) and the
loop's state (JSON). The file ``LATEST`` names the newest complete one and is replaced atomically,
so a SIGKILL at any moment leaves either the previous or the new checkpoint, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from khabar.models.files import write_text_atomic


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scheduler, state: dict) -> Path:
    """Write a new checkpoint, point LATEST at it, delete older ones."""
    from safetensors.torch import save_file

    n = len(list(run_dir.glob("ckpt-*")))
    name = f"ckpt-{state['epoch']:03d}-{state['step']:07d}-{n}"
    tmp = run_dir / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, sort_keys=True, default=str))
    final = run_dir / name
    os.replace(tmp, final)
    write_text_atomic(run_dir / "LATEST", name)
    for old in run_dir.glob("ckpt-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scheduler) -> dict | None:
    """Restore the newest complete checkpoint into the objects; return the loop state or None."""
    from safetensors.torch import load_file

    pointer = run_dir / "LATEST"
    if not pointer.exists():
        return None
    ckpt = run_dir / pointer.read_text().strip()
    if not (ckpt / "state.json").exists():
        return None
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    extra = torch.load(ckpt / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    return json.loads((ckpt / "state.json").read_text())
