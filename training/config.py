"""Training configs: typed models read from YAML, overridable from the command line (nanoGPT style).

The models are pydantic dataclasses: the declared types validate every value (from a YAML file,
a ``--set`` override or a stored config), and the stdlib ``dataclasses`` helpers that the rest of
the package uses (``asdict``, ``replace``, ``fields``) keep working on them. A value that does not
fit becomes a :class:`ConfigError` naming the key and what it must be.

Strings may use ``${VAR}`` or ``${VAR:-default}`` so data paths come from the environment
(``KHABAR_DATA``, set by ``--data-dir``) and ``../shared/data`` is never hard-coded.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import json
import os
import re
from dataclasses import asdict, fields
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import (BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this TypedDict on Python < 3.12

from khabar.models.schema import TASKS

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Unknown keys are errors; numbers are taken where a string belongs (YAML reads a label `0` or a
# dataset name `2018` as a number, and the readers compare labels as strings).
_STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class ConfigError(ValueError):
    """A config that cannot be used; the message (one line) names the key."""


def _not_a_boolean(value: Any) -> Any:
    """YAML reads yes/no/true as booleans, and pydantic would take them as 1 and 0."""
    if isinstance(value, bool):
        raise _invalid("must be a number, not true/false")
    return value


# Numbers may be written as strings (YAML reads `2e-5`, without a dot, as one); booleans are refused.
Int = Annotated[int, BeforeValidator(_not_a_boolean)]
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
Positive = Annotated[Int, Field(gt=0)]
NonNegative = Annotated[Int, Field(ge=0)]
Task = Literal[TASKS]  # type: ignore[valid-type]  # the same three names everywhere


class Holdout(TypedDict, total=False):
    """A fixed split of a file with no dev split: ``take: train`` keeps the rows outside
    ``fraction`` (by hash of id, with ``seed``, else the run's seed), ``take: heldout`` those inside.

    A TypedDict rather than a model so a stored config keeps only the keys written (the run
    folder's hash is computed from it).
    """

    __pydantic_config__ = _STRICT  # type: ignore[misc]
    fraction: Annotated[Float, Field(gt=0, lt=1)]
    take: Literal["train", "heldout"]
    seed: Int


@dataclass(config=_STRICT)
class Source:
    """One labelled file (or HF dataset) and how to read it.

    ``limit`` keeps a fixed pseudo-random subset (by hash of id) of that many rows; ``holdout``
    (:class:`Holdout`) splits a file that has no dev split. In a config a source is a path, or a
    mapping with ``path``; its other keys are options of the task's reader (``text_field``, ...).
    """

    path: Annotated[str, Field(min_length=1)]
    name: str = ""
    label_map: dict[str, str] | None = None
    limit: NonNegative | None = None
    holdout: Holdout | None = None
    skip_bad: bool = Field(default=False, strict=True)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_config(cls, value: Any) -> Any:
        """A bare path is a source; keys that are not fields are reader options."""
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            extra = {k: v for k, v in value.items() if k not in known}
            if extra:
                options = value.get("options") or {}
                if not isinstance(options, dict):
                    return value  # the options field reports it
                return {**{k: v for k, v in value.items() if k in known}, "options": {**options, **extra}}
        return value  # keyword arguments from Python code, or something to refuse

    def display_name(self) -> str:
        """Name used for per-file metrics: explicit ``name`` or the dataset folder name."""
        if self.name:
            return self.name
        p = Path(self.path)
        return p.parent.name if p.stem in {"train", "dev", "test"} else p.stem


@dataclass(config=_STRICT)
class TaskData:
    """Training and dev sources for one task, and how much of the step budget it gets.

    ``max_windows`` caps the training windows per example for this task (None: the config's
    ``max_windows_per_example``; 0: every window). ``repeat`` multiplies the task's batches per
    epoch (NER's 3.5k sentences are cheap next to articles and need more passes than one epoch
    of the mix gives). ``blend_holdout`` sets aside that fraction of the training rows (by hash of
    id) from the encoder, so a hybrid head can fit its blend on rows the encoder never saw.
    """

    train: Annotated[list[Source], Field(min_length=1)]
    dev: list[Source] = Field(default_factory=list)
    labels: list[str] | None = None
    max_windows: NonNegative | None = None
    repeat: Annotated[Float, Field(gt=0)] = 1.0
    blend_holdout: Annotated[Float, Field(ge=0, le=0.5)] = 0.0

    @field_validator("train", "dev", mode="before")
    @classmethod
    def _one_source_is_a_list_of_one(cls, value: Any) -> Any:
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


@dataclass(config=_STRICT)
class TrainConfig:
    """Everything a training run depends on; its hash names the run folder (for resuming)."""

    name: Annotated[str, Field(min_length=1)]
    backbone: Annotated[str, Field(min_length=1)]
    tasks: Annotated[dict[Task, TaskData], Field(min_length=1)]
    max_length: Positive = 256
    stride: NonNegative = 64
    max_windows_per_example: NonNegative = 4
    epochs: Positive = 3
    batch_size: Positive = 16
    grad_accum: Positive = 1
    lr: Float = 5e-5
    head_lr: Float = 1e-3
    weight_decay: Float = 0.01
    warmup_ratio: Float = 0.06
    dropout: Float = 0.1
    patience: NonNegative = 2
    # Also try the mean of the last N epochs' end weights and keep it when its dev score is higher
    # (training/averaging.py says why); 1 keeps the best single epoch.
    average_last_epochs: Positive = 1
    sampling_temperature: Annotated[Float, Field(gt=0)] = 2.0
    seed: Int = 13
    checkpoint_every_steps: NonNegative = 200  # 0: no mid-epoch checkpoints
    eval_batch_size: Positive = 32
    max_steps_per_epoch: Positive | None = None
    repair_bio: bool = Field(default=True, strict=True)
    # A stored model's tag: start from its weights instead of the bare backbone (retraining).
    init_from: str | None = None
    # Keep the word-embedding table as pretrained (training/freezing.py says why).
    freeze_embeddings: bool = Field(default=False, strict=True)
    # Keep the embedding module and the encoder's bottom N layers as pretrained: their backward
    # pass is skipped, so a step costs less (training/freezing.py); 0: every layer learns.
    freeze_layers: NonNegative = 0
    # Loss weights for topic and stance labels: none | sqrt_inverse (training/weighting.py).
    class_weighting: str = "none"
    # NER's own copies of the encoder's top N layers (models/multitask.py says why); 0: shared.
    ner_own_layers: NonNegative = 0
    # Score dev after every epoch (the curve, `patience`, the best epoch) or only after the last:
    # false saves one dev pass per earlier epoch (about 3 min each for offline.yaml on 2 cores),
    # keeps the last epoch's weights and turns `patience` off.
    dev_every_epoch: bool = Field(default=True, strict=True)
    # At most this many rows per training source that the hybrid blend is fitted on (the encoder
    # runs over each once, after training: 1,000 topic rows take about 4 min less than 2,000).
    blend_max_rows: Annotated[int, Field(ge=50, strict=True)] = 2000

    @field_validator("class_weighting")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        from khabar.training.weighting import SCHEMES  # imports torch: only when a config is read

        if value not in SCHEMES:
            raise _invalid(f"must be one of {', '.join(SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.stride * 2 >= self.max_length:
            raise _invalid(f"stride {self.stride} must be under half of max_length {self.max_length}")
        for task, data in self.tasks.items():
            for part in ("train", "dev"):
                for i, src in enumerate(getattr(data, part)):
                    _check_options(src, task, f"tasks.{task}.{part}.{i}")
        return self

    def fingerprint(self) -> str:
        """Short hash of the resolved config: the same command resumes the same run."""
        values = asdict(self)
        # Fields at the defaults they had when they were added drop out, which keeps the hashes
        # (run folders) of configs written before the fields existed.
        for key, default in _NEWER_CONFIG_FIELDS.items():
            if values[key] == default:
                del values[key]
        for task in values["tasks"].values():
            for key, default in _NEWER_TASK_FIELDS.items():
                if task.get(key) == default:
                    del task[key]
        blob = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        """Plain dict (for artifacts and logs); :func:`from_dict` reads it back."""
        return asdict(self)


# Frozen: a later change of a field's default must not change old configs' run folders.
_NEWER_CONFIG_FIELDS = {"init_from": None, "freeze_embeddings": False, "class_weighting": "none",
                        "ner_own_layers": 0, "freeze_layers": 0,
                        "average_last_epochs": 1, "dev_every_epoch": True, "blend_max_rows": 2000}
_NEWER_TASK_FIELDS = {"max_windows": None, "repeat": 1.0, "blend_holdout": 0.0}
_VALIDATOR = TypeAdapter(TrainConfig)


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as is (no ``{}`` templating of user text)."""
    return PydanticCustomError("config", "{message}", {"message": message})


def _check_options(src: Source, task: str, where: str) -> None:
    """Refuse a source key that is neither a :class:`Source` field nor an option of the task's
    reader (a typo such as ``limt`` would otherwise fail deep inside the reader, or not at all)."""
    allowed = _reader_options(task)
    unknown = sorted(set(src.options) - allowed)
    if unknown:
        own = [f.name for f in fields(Source)]
        known = own + sorted(allowed - set(own))
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _invalid(f"unknown key {where}.{unknown[0]}{hint}; a {task} source takes {', '.join(known)}")


def _reader_options(task: str) -> set[str]:
    """Keyword options the ``task`` reader takes (``read_topic``, ``read_stance``, ``read_ner``)."""
    from khabar.training import readers

    return set(inspect.signature(getattr(readers, f"read_{task}")).parameters) - {"source"}


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
    """Apply ``key=value`` overrides to raw config values; values are parsed as YAML scalars.

    A dotted key walks mappings, and a number in it picks a list element:
    ``tasks.stance.train.1.limit=500``. A task's ``train`` and ``dev`` are lists of source
    mappings here even where the YAML wrote one source or a bare path, and a key right after a
    list of one source addresses that source (``tasks.topic.train.limit=500``). Raises
    :class:`ConfigError` for a path that cannot be followed; the values are checked by
    :func:`from_dict`.
    """
    raw = _sources_as_lists(copy.deepcopy(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not a YAML scalar or list") from None
        try:
            _set(raw, key.strip().split("."), value)
        except ConfigError as err:
            raise ConfigError(f"override {item!r}: {err}") from None
    return raw


def _sources_as_lists(raw: Any) -> Any:
    """Each task's ``train``/``dev`` as a list of mappings, so overrides can address one source."""
    tasks = raw.get("tasks") if isinstance(raw, dict) else None
    if not isinstance(tasks, dict):
        return raw  # from_dict names what is wrong
    for spec in tasks.values():
        for part in ("train", "dev") if isinstance(spec, dict) else ():
            if spec.get(part) is not None:
                sources = spec[part] if isinstance(spec[part], list) else [spec[part]]
                spec[part] = [{"path": s} if isinstance(s, str) else s for s in sources]
    return raw


def _set(node: Any, parts: list[str], value: Any) -> None:
    """Set ``value`` at the dotted path ``parts`` inside ``node``, creating missing mappings."""
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the config"
        if isinstance(node, list) and not part.isdigit():
            if len(node) != 1 or not isinstance(node[0], dict):
                raise ConfigError(f"{here} is a list of {len(node)}; pick an element by its index, "
                                  f"e.g. {here}.0.{'.'.join(parts[depth:])}")
            node = node[0]
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = int(part)
            if index >= len(node):
                raise ConfigError(f"{here} has {len(node)} element(s); index {index} is out of range")
        elif isinstance(node, dict):
            index = part
            if not last and node.get(part) is None:
                node[part] = {}
        else:
            raise ConfigError(f"{here} is {node!r}, not a mapping or a list, so it has no {part!r}")
        if last:
            node[index] = value
        else:
            node = node[index]


def load_config(path: str | Path, overrides: list[str] | None = None,
                tasks: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply overrides, keep only ``tasks`` of its tasks (None: all), expand
    variables, validate."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config {path} does not exist (see configs/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values")
    raw = apply_overrides(raw, overrides or [])
    if tasks is not None:
        raw = keep_tasks(raw, tasks, where=str(path))
    return from_dict(expand_vars(raw), where=str(path))


def keep_tasks(raw: dict, tasks: list[str], where: str = "config") -> dict:
    """``raw`` with only the named tasks under ``tasks``, in the config's order.

    For measuring a task trained alone with the rest of a recipe unchanged (the same windows,
    repeats, schedule and seed), which tells how much the other tasks cost it. Raises
    :class:`ConfigError` for an empty list or a task the config does not train.
    """
    wanted = [t.strip() for t in tasks if t.strip()]
    if not wanted:
        raise ConfigError("--tasks names no task; give one or more of the config's tasks")
    present = raw.get("tasks")
    if not isinstance(present, dict) or not present:
        raise ConfigError(f"{where} has no tasks to choose from")
    unknown = [t for t in wanted if t not in present]
    if unknown:
        raise ConfigError(f"{where} does not train {', '.join(map(repr, unknown))}; "
                          f"its tasks are {', '.join(present)}")
    return {**raw, "tasks": {t: spec for t, spec in present.items() if t in wanted}}


def from_dict(raw: dict, where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from plain values (a config's or :meth:`to_dict`'s).

    Raises :class:`ConfigError`, one line naming each wrong key and what it must be.
    """
    try:
        return _VALIDATOR.validate_python(raw)
    except ValidationError as err:
        raise ConfigError(f"{where}: " + "; ".join(_explain(e) for e in err.errors())) from None


def _explain(error: Any) -> str:
    """One pydantic error as ``key must be ..., got value`` (or an unknown or missing key)."""
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc)
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = sorted(get_type_hints(_declared(loc[:-1]) or TrainConfig))
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown key {key}{hint}; known: {', '.join(known)}"
    if error["type"] in ("missing", "missing_argument"):
        return f"{key} is required"
    if loc[-1:] == ("[key]",):
        parent = ".".join(str(p) for p in loc[:-2])
        what = "task" if parent == "tasks" else f"key in {parent}"
        choices = get_args(get_args(_declared(loc[:-2]))[0])
        use = f"; use {', '.join(choices)}" if choices else ""
        return f"unknown {what} {loc[-2]!r}{use}"
    expected = error["msg"]
    if re.match(r"\w+ should ", expected):  # pydantic's "Input should be a valid integer, got a ..."
        expected = re.sub(r"^\w+ should ", "must ", expected.split(", ")[0]).replace(" after validation", "")
    if error["type"] == "dataclass_type":
        expected = "must be a mapping"
    if not loc:
        return expected
    return f"{key} {expected}, got {error['input']!r}"


def _declared(loc: tuple) -> Any:
    """The type TrainConfig declares at ``loc`` (a path of keys and indexes), None if unknown."""
    hint: Any = TrainConfig
    for part in loc:
        hint = _bare(hint)
        if get_origin(hint) in (list, dict):
            hint = get_args(hint)[-1]
        elif isinstance(part, str) and (hasattr(hint, "__dataclass_fields__") or hasattr(hint, "__total__")):
            hint = get_type_hints(hint, include_extras=True).get(part)
        else:
            return None
    return _bare(hint)


def _bare(hint: Any) -> Any:
    """``hint`` without ``Annotated`` metadata and ``| None``."""
    while True:
        if get_origin(hint) is Annotated:
            hint = get_args(hint)[0]
        elif get_origin(hint) in (Union, UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        else:
            return hint
