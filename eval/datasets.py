"""The labelled files an evaluation reads: which ones, checked before any work, read once.

Files come from the command line (``--topic``, ``--stance``, ``--ner``) or from a data folder in
the ../shared/data layout (``--data-dir``), which stands for the dev splits the training configs
use: ant21 dev, ANS and Baly dev, Mawqif's fixed 20 % held out of its train file, ANERcorp dev.
Gold labels the model was never trained on are counted and left out of scoring, not crashed on.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from khabar.models.schema import TASKS
from khabar.training.config import Source

# The dev splits of ../shared/data, as configs/offline.yaml names them.
STANDARD_DEV = {
    "topic": [Source(path="topic/ant21/dev.jsonl")],
    "stance": [Source(path="stance/ans/dev.jsonl"), Source(path="stance/baly2018/dev.jsonl"),
               Source(path="stance/mawqif/train.jsonl", name="mawqif",
                      holdout={"fraction": 0.2, "take": "heldout"})],
    "ner": [Source(path="ner/anercorp/dev.conll")],
}


class EvalInputError(ValueError):
    """Input an evaluation cannot start with; the message is one line saying what to fix."""


@dataclass
class EvalSet:
    """One scored file: its examples with gold labels the model knows, and what was left out."""

    task: str
    name: str
    path: str
    examples: list
    unknown_labels: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    repaired: int = 0

    @property
    def key(self) -> str:
        """``task/name``, unique within one evaluation."""
        return f"{self.task}/{self.name}"


def plan_sources(topic: Path | None = None, stance: list[Path] = (), ner: list[Path] = (),
                 data_dir: Path | None = None, model_tasks: list[str] | None = None,
                 limit: int | None = None) -> dict[str, list[Source]]:
    """Sources per task: explicit files win for their task; ``data_dir`` fills the others.

    With ``data_dir``, tasks the model lacks are left out (it is a convenience); a file named
    explicitly for such a task is an error. Raises :class:`EvalInputError` for a missing or
    empty file, or when nothing is left to evaluate.
    """
    plan: dict[str, list[Source]] = {}
    explicit = {"topic": [topic] if topic else [], "stance": list(stance), "ner": list(ner)}
    for task in TASKS:
        if explicit[task]:
            if model_tasks is not None and task not in model_tasks:
                raise EvalInputError(f"the model has no {task} task (it has {', '.join(model_tasks)}); "
                                     f"drop the --{task} file or pick another --model")
            plan[task] = [Source(path=str(p)) for p in explicit[task]]
        elif data_dir is not None and (model_tasks is None or task in model_tasks):
            plan[task] = [Source(path=str(Path(data_dir) / s.path), name=s.name, holdout=s.holdout)
                          for s in STANDARD_DEV[task]]
    if data_dir is not None and not Path(data_dir).is_dir():
        raise EvalInputError(f"--data-dir {data_dir} is not a folder (expected the ../shared/data layout)")
    if not plan:
        raise EvalInputError("nothing to evaluate: pass --topic, --stance, --ner or --data-dir")
    for sources in plan.values():
        for src in sources:
            _check_file(Path(src.path))
            src.limit = limit
    return plan


def _check_file(path: Path) -> None:
    if not path.exists():
        raise EvalInputError(f"{path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise EvalInputError(f"{path} is empty")


def read_sets(plan: dict[str, list[Source]], schema_tasks: dict[str, list[str]],
              seed: int = 13) -> list[EvalSet]:
    """Read every planned source; drop (and count) gold labels outside the model's label set.

    Raises :class:`EvalInputError` (one line) for unreadable data or a file with no example
    left that the model can be scored on.
    """
    from khabar.training.data import read_source
    from khabar.training.readers import DataError

    sets: list[EvalSet] = []
    used: Counter = Counter()
    for task, sources in plan.items():
        for src in sources:
            # Keep every gold label the file has: unknown ones are reported below, not fatal.
            opts = {"labels": None} if task == "stance" else {"types": None} if task == "ner" else {}
            src.options = {**opts, **src.options}
            try:
                data = read_source(task, src, seed=seed)
            except DataError as err:
                raise EvalInputError(str(err).splitlines()[0]) from None
            name = data.name
            used[(task, name)] += 1
            if used[(task, name)] > 1:  # two files named dev.jsonl in folders of the same name
                name = f"{name}-{used[(task, name)]}"
            known = schema_tasks[task]
            eset = EvalSet(task, name, str(src.path), [], skipped=data.skipped, repaired=data.repaired)
            if task == "ner":
                eset.examples, eset.unknown_labels = _known_entities(data.examples, known)
            else:
                eset.examples = [e for e in data.examples if e.label in known]
                eset.unknown_labels = dict(Counter(e.label for e in data.examples if e.label not in known))
            if not eset.examples:
                raise EvalInputError(f"{src.path}: no example has a label the model knows "
                                     f"(file labels: {', '.join(sorted(eset.unknown_labels))}; "
                                     f"model labels: {', '.join(known)})")
            sets.append(eset)
    return sets


def _known_entities(examples: list, bio: list[str]) -> tuple[list, dict[str, int]]:
    """Turn gold entities of types the model lacks into ``O``; count them per type."""
    from dataclasses import replace

    types = {lab[2:] for lab in bio if lab != "O"}
    unknown: Counter = Counter()
    out = []
    for ex in examples:
        tags = list(ex.tags)
        changed = False
        for i, tag in enumerate(tags):
            if tag != "O" and tag[2:] not in types:
                if tag.startswith("B-"):
                    unknown[tag[2:]] += 1
                tags[i], changed = "O", True
        out.append(replace(ex, tags=tuple(tags)) if changed else ex)
    return out, dict(unknown)
