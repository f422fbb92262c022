"""The label schema a model carries: its tasks, their labels, and how text is windowed."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

TASKS = ("topic", "stance", "ner")
# The public API calls the NER task "entities"; internally the head is "ner".
API_TASKS = {"topic": "topic", "stance": "stance", "entities": "ner"}


@dataclass
class ModelSchema:
    """Tasks -> ordered labels, plus the windowing every user of the model must share.

    ``tasks["ner"]`` holds BIO labels ("O", "B-PERS", "I-PERS", ...). ``max_length`` is the window
    length in tokens (specials included) and ``stride`` the overlap between windows.
    ``stance_windows`` caps how many windows of an article stance reads per target (None: all):
    a model trained on the first N windows of each pair has never learnt to read stance from
    later ones, and each extra window is one more encoder pass per target.
    """

    tasks: dict[str, list[str]]
    max_length: int = 256
    stride: int = 64
    pooling: str = "mean"
    backbone: dict = field(default_factory=dict)
    stance_windows: int | None = None
    # Which windows stance reads ("first": reading order; "evidence": the windows whose text shares
    # the target's rarer words, models/windows.evidence_ranked) and how their scores are pooled
    # ("mean": length-weighted; "evidence": windows that take a side outweigh the ones that do not).
    stance_select: str = "first"
    stance_pool: str = "mean"

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
        if not self.tasks:
            raise ValueError("a model needs at least one task")
        if self.stride >= self.max_length // 2:
            raise ValueError(f"stride {self.stride} must be under half of max_length {self.max_length}")
        if self.stance_windows is not None and self.stance_windows < 1:
            raise ValueError(f"stance_windows must be at least 1 (or null for all), got {self.stance_windows}")
        if self.stance_select not in ("first", "evidence"):
            raise ValueError(f"stance_select must be 'first' or 'evidence', got {self.stance_select!r}")
        if self.stance_pool not in ("mean", "evidence"):
            raise ValueError(f"stance_pool must be 'mean' or 'evidence', got {self.stance_pool!r}")

    def entity_types(self) -> list[str]:
        """NER entity types (PERS, LOC, ...) in label order."""
        seen: list[str] = []
        for label in self.tasks.get("ner", []):
            if label != "O" and label[2:] not in seen:
                seen.append(label[2:])
        return seen

    def to_json(self) -> str:
        """Serialize with sorted keys (artifacts are compared byte for byte)."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSchema":
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))
