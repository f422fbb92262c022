"""The label schema a model carries: its tasks, their labels, and how text is windowed."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

# The heads a model can have, by their internal names (configs, data folders, the model store).
TASKS = ("topic", "stance", "ner")
# The public words (requests, results, `khabar score --tasks`, GET /info) -> the head each one
# runs: the one mapping between the two words for the entity task. The API says "entities" (what
# a client gets back), the head and its BIO labels say "ner"; code turns one into the other here.
API_TASKS = {"topic": "topic", "stance": "stance", "entities": "ner"}
# A request may also ask for "actors" (each actor's stance toward each target): no head of its
# own, it reads with the stance head (and the ner head's PERS / ORG entities when the model has one).
ACTORS = "actors"
REQUEST_TASKS = (*API_TASKS, ACTORS)


class TaskError(ValueError):
    """A request asks for a task that does not exist or that the model lacks.

    ``request_field`` is the request field to change: "tasks", or "actors" for actors sent to a
    model without a stance head.
    """

    def __init__(self, message: str, request_field: str = "tasks") -> None:
        super().__init__(message)
        self.request_field = request_field


@dataclass
class ModelSchema:
    """Tasks -> ordered labels, plus the windowing every user of the model must share.

    ``tasks["ner"]`` holds BIO labels ("O", "B-PERS", "I-PERS", ...). ``max_length`` is the window
    length in tokens (specials included) and ``stride`` the overlap between windows.
    ``stance_windows`` caps how many windows of an article stance reads per target (None: all):
    a model trained on the first N windows of each pair has never learnt to read stance from
    later ones, and each extra window is one more encoder pass per target. ``topic_windows`` caps
    the windows (in reading order) whose topic scores are pooled per article (None: all): a topic
    part trained on each article's first window (title and lead) may read later ones worse.
    """

    tasks: dict[str, list[str]]
    max_length: int = 256
    stride: int = 64
    pooling: str = "mean"
    backbone: dict = field(default_factory=dict)
    stance_windows: int | None = None
    topic_windows: int | None = None
    # Which windows stance reads ("first": reading order; "evidence": the windows whose text shares
    # the target's rarer words, models/windows.evidence_ranked) and how their scores are pooled
    # ("mean": length-weighted; "evidence": windows that take a side outweigh the ones that do not).
    stance_select: str = "first"
    stance_pool: str = "mean"
    # How many of the encoder's top layers NER has its own copy of (models/multitask.py); 0: none.
    ner_own_layers: int = 0

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
        if self.topic_windows is not None and self.topic_windows < 1:
            raise ValueError(f"topic_windows must be at least 1 (or null for all), got {self.topic_windows}")
        if self.ner_own_layers < 0:
            raise ValueError(f"ner_own_layers must be 0 or more, got {self.ner_own_layers}")
        if self.stance_select not in ("first", "evidence"):
            raise ValueError(f"stance_select must be 'first' or 'evidence', got {self.stance_select!r}")
        if self.stance_pool not in ("mean", "evidence"):
            raise ValueError(f"stance_pool must be 'mean' or 'evidence', got {self.stance_pool!r}")

    def api_tasks(self) -> list[str]:
        """The API task names this model answers (see :data:`API_TASKS`)."""
        return [api for api, head in API_TASKS.items() if head in self.tasks]

    def request_tasks(self, asked: Sequence[str] | None, actors: Sequence[str] = ()) -> list[str]:
        """The API tasks a request runs, checked against this model: the one place a request's
        tasks are checked (the service, batch jobs and the predictor all call it).

        ``asked`` None means every task the model has; ``"actors"`` in ``asked`` or any ``actors``
        add actor stance, which needs the stance head. Duplicates are dropped, order kept.
        Raises :class:`TaskError` saying what to change.
        """
        have = self.api_tasks()
        wanted = list(dict.fromkeys(asked)) if asked is not None else list(have)
        unknown = [t for t in wanted if t not in REQUEST_TASKS]
        if unknown:
            raise TaskError(f"unknown task(s) {unknown}; choose from {list(REQUEST_TASKS)}")
        missing = [t for t in wanted if t != ACTORS and t not in have]
        if missing:
            able = have + [ACTORS] if "stance" in self.tasks else have
            raise TaskError(f"this model has no {missing} task(s); it has {able}")
        if (ACTORS in wanted or actors) and "stance" not in self.tasks:
            raise TaskError(f"actor stance needs a stance head; this model has {have}",
                            request_field="tasks" if ACTORS in wanted else "actors")
        return wanted

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
