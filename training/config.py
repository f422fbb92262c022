"""Training configs: plain values in YAML, overridable from the command line (nanoGPT style).

Strings may use ``${VAR}`` or ``${VAR:-default}`` so data paths come from the environment
(``KHABAR_DATA``, set by ``--data-dir``) and ``../shared/data`` is never hard-coded.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key."""


@dataclass
class Source:
    """One labelled file (or HF dataset) and how to read it.

    ``limit`` keeps a fixed pseudo-random subset (by hash of id) of that many rows; ``holdout``
    splits a file that has no dev split: ``take: train`` keeps the rows outside a fixed
    ``fraction``, ``take: heldout`` keeps the rows inside it.
    """

    path: str
    name: str = ""
    label_map: dict[str, str] | None = None
    limit: int | None = None
    holdout: dict[str, Any] | None = None
    skip_bad: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def display_name(self) -> str:
        """Name used for per-file metrics: explicit ``name`` or the dataset folder name."""
        if self.name:
            return self.name
        p = Path(self.path)
        return p.parent.name if p.stem in {"train", "dev", "test"} else p.stem


@dataclass
class TaskData:
    """Training and dev sources for one task, and how much of the step budget it gets.

    ``max_windows`` caps the training windows per example for this task (None: the config's
    ``max_windows_per_example``; 0: every window). ``repeat`` multiplies the task's batches per
    epoch (NER's 3.5k sentences are cheap next to articles and need more passes than one epoch
    of the mix gives). ``blend_holdout`` sets aside that fraction of the training rows (by hash of
    id) from the encoder, so a hybrid head can fit its blend on rows the encoder never saw.
    """

    train: list[Source]
    dev: list[Source] = field(default_factory=list)
    labels: list[str] | None = None
    max_windows: int | None = None
    repeat: float = 1.0
    blend_holdout: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run depends on; its hash names the run folder (for resuming)."""

    name: str
    backbone: str
    tasks: dict[str, TaskData]
    max_length: int = 256
    stride: int = 64
    max_windows_per_example: int = 4
    epochs: int = 3
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    dropout: float = 0.1
    patience: int = 2
    sampling_temperature: float = 2.0
    seed: int = 13
    checkpoint_every_steps: int = 200
    eval_batch_size: int = 32
    max_steps_per_epoch: int | None = None
    repair_bio: bool = True
    # A stored model's tag: start from its weights instead of the bare backbone (retraining).
    init_from: str | None = None
    # Keep the word-embedding table as pretrained (training/loop.py says why).
    freeze_embeddings: bool = False
    # Loss weights for topic and stance labels: none | sqrt_inverse (training/weighting.py).
    class_weighting: str = "none"

    def fingerprint(self) -> str:
        """Short hash of the resolved config: the same command resumes the same run."""
        values = asdict(self)
        # Fields at their defaults drop out, which keeps the hashes (run folders) of configs
        # written before the fields existed.
        for key, default in (("init_from", None), ("freeze_embeddings", False), ("class_weighting", "none")):
            if values[key] == default:
                del values[key]
        for task in values["tasks"].values():
            for key, default in _TASK_DEFAULTS.items():
                if task.get(key) == default:
                    del task[key]
        blob = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        """Plain dict (for artifacts and logs)."""
        return asdict(self)


_TASK_DEFAULTS = {"max_windows": None, "repeat": 1.0, "blend_holdout": 0.0}


def expand_vars(value: Any) -> Any:
    """Recursively substitute ``${VAR}`` / ``${VAR:-default}`` in strings."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"config uses ${{{m.group(1)}}} but it is not set")
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [expand_vars(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_vars(v) for k, v in value.items()}
    return value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` / ``a.b.c=value`` overrides; values are parsed as YAML scalars."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply overrides, expand variables, validate."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config {path} does not exist (see configs/ for examples)")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw = expand_vars(apply_overrides(raw, overrides or []))
    return from_dict(raw, where=str(path))


def from_dict(raw: dict, where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from plain values."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("name", "backbone", "tasks"):
        if not raw.get(key):
            raise ConfigError(f"{where}: {key!r} is required")
    tasks = {}
    for task, spec in raw["tasks"].items():
        if task not in {"topic", "stance", "ner"}:
            raise ConfigError(f"{where}: unknown task {task!r}; use topic, stance or ner")
        spec = spec or {}
        if not spec.get("train"):
            raise ConfigError(f"{where}: tasks.{task}.train is required")
        tasks[task] = TaskData(
            train=[_source(s, f"{where}: tasks.{task}.train") for s in _as_list(spec["train"])],
            dev=[_source(s, f"{where}: tasks.{task}.dev") for s in _as_list(spec.get("dev", []))],
            labels=spec.get("labels"),
            **_task_budget(spec, f"{where}: tasks.{task}"),
        )
    values = {k: _typed(k, v, where) for k, v in raw.items() if k != "tasks"}
    cfg = TrainConfig(tasks=tasks, **values)
    if cfg.stride * 2 >= cfg.max_length:
        raise ConfigError(f"{where}: stride {cfg.stride} must be under half of max_length {cfg.max_length}")
    from khabar.training.weighting import SCHEMES

    if cfg.class_weighting not in SCHEMES:
        raise ConfigError(f"{where}: class_weighting must be one of {', '.join(SCHEMES)}, "
                          f"got {cfg.class_weighting!r}")
    return cfg


_SCALAR_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _typed(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of TrainConfig's field ``key``, or a ConfigError naming it.

    YAML reads ``2e-5`` (no dot) as a string, and ``--set lr=2e-5`` is how people write it; a
    string learning rate would only fail deep inside the optimizer.
    """
    annotation = str(next(f.type for f in fields(TrainConfig) if f.name == key))
    optional = annotation.endswith("| None")
    want = _SCALAR_TYPES.get(annotation.replace("| None", "").strip())
    if want is None or (value is None and optional) or (type(value) is want):
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want in (int, float) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and (want is float or number.is_integer()):
            return want(number)
    raise ConfigError(f"{where}: {key} must be {want.__name__}{' or null' if optional else ''}, "
                      f"got {value!r}")


def _task_budget(spec: dict, where: str) -> dict:
    """The per-task step-budget keys of a task spec, checked (TaskData says what they mean)."""
    unknown = set(spec) - {"train", "dev", "labels", *_TASK_DEFAULTS}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: "
                          f"{sorted(['train', 'dev', 'labels', *_TASK_DEFAULTS])}")
    out: dict = {}
    if spec.get("max_windows") is not None:
        value = spec["max_windows"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}.max_windows must be an int >= 0 (0: every window), got {value!r}")
        out["max_windows"] = value
    for key, low, high in (("repeat", 0.0, None), ("blend_holdout", 0.0, 0.5)):
        if key in spec:
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low \
                    or (high is not None and value > high) or (key == "repeat" and value == 0):
                bound = f"in [{low}, {high}]" if high is not None else f"above {low}"
                raise ConfigError(f"{where}.{key} must be a number {bound}, got {value!r}")
            out[key] = float(value)
    return out


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _source(spec: Any, where: str) -> Source:
    if isinstance(spec, str):
        return Source(path=spec)
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"{where}: each source is a path or a mapping with 'path'")
    known = {f.name for f in fields(Source)}
    extra = {k: v for k, v in spec.items() if k not in known}
    base = {k: v for k, v in spec.items() if k in known}
    base.setdefault("options", {}).update(extra)
    return Source(**base)
