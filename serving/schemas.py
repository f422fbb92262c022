"""Request and response models of the HTTP API, with the limits from :mod:`khabar.settings`.

They are the service's contract: BentoML validates every request against them (a bad request
never reaches the model) and publishes them in ``/docs.json`` under these class names, so the
names stay as clients know them (the predictor's own input is :class:`khabar.models.predictor.Article`).
Messages of the validators say what to change, since they go back to the client as they are.
Whether the model has the tasks asked for is checked by the service, with the models layer's one
rule (:meth:`khabar.models.schema.ModelSchema.request_tasks`).
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from khabar.models.schema import REQUEST_TASKS
from khabar.settings import settings

SETTINGS = settings()
Task = Literal[REQUEST_TASKS]  # topic, stance, entities, actors
MAX_ACTORS = 16

Target = Annotated[str, Field(min_length=1, max_length=SETTINGS.max_target_chars,
                              description="A claim, agreement or policy to judge the article's stance toward.")]


class _Strict(BaseModel):
    # strict: a number is not silently taken for a string; forbid: a misspelt field ("target")
    # is an error rather than ignored.
    model_config = ConfigDict(strict=True, extra="forbid")


class LabelRequest(_Strict):
    """One article to label."""

    # no min_length: the validator's message for "" and "   " says what to do
    text: str = Field(max_length=SETTINGS.max_chars, json_schema_extra={"minLength": 1},
                      description="The article (Arabic). Entity offsets index this exact string.")
    targets: list[Target] = Field(default_factory=list, max_length=SETTINGS.max_targets,
                                  description="Stance targets; the stance toward each is returned in order.")
    tasks: Optional[list[Task]] = Field(None, min_length=1, max_length=len(REQUEST_TASKS),
                                        description="Tasks to run; default: every task the model has. "
                                                    "'actors' adds each actor's stance under every target.")
    actors: list[Target] = Field(default_factory=list, max_length=MAX_ACTORS,
                                 description="Names or group nouns to track (e.g. \"الفصائل المسلحة\"); with them, "
                                             "every target's stance lists each actor found in the text, these and "
                                             "the people and organisations the model finds.")

    @field_validator("text")
    @classmethod
    def _text_has_content(cls, text: str) -> str:
        if not text.strip():
            raise PydanticCustomError("empty_text", "text is empty or only whitespace: send the article's text")
        return text

    @field_validator("targets", "actors")
    @classmethod
    def _items_have_content(cls, items: list[str], info) -> list[str]:
        what = info.field_name[:-1]
        for i, item in enumerate(items):
            if not item.strip():
                raise PydanticCustomError(
                    f"empty_{what}", "{what} {index} is empty or only whitespace: remove it or name one",
                    {"index": i, "what": what})
        return items

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: Optional[list[str]]) -> Optional[list[str]]:
        return list(dict.fromkeys(tasks)) if tasks is not None else None


class BatchRequest(_Strict):
    """Several articles in one call; results come back in the same order."""

    items: list[LabelRequest] = Field(min_length=1, max_length=SETTINGS.max_batch_items)

    @model_validator(mode="after")
    def _total_size(self) -> "BatchRequest":
        total = sum(len(item.text) for item in self.items)
        if total > SETTINGS.max_batch_chars:
            raise PydanticCustomError(
                "batch_too_long",
                "the articles hold {total} characters together; the limit is {limit} "
                "(KHABAR_MAX_BATCH_CHARS): split them over several calls",
                {"total": total, "limit": SETTINGS.max_batch_chars})
        return self


class Scored(BaseModel):
    """A predicted label with its probability and the probability of every label."""

    label: str
    score: float = Field(ge=0, le=1)
    scores: dict[str, float]


class Span(BaseModel):
    """A stretch of the request's text; ``text == request.text[start:end]``."""

    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class ActorStance(Scored):
    """One actor's stance toward the target (favor, against, or neutral when it takes no side),
    where the text names it, and the clauses the label rests on. Its ``scores`` are each side's
    share of the weight of the stance cues in the evidence (``neutral`` 1.0 when they state no
    side), or the stance head's probabilities when the actor's own words decided."""

    actor: str
    source: str = Field(description="'user' (from the request's actors), or 'PERS' / 'ORG' (an entity found)")
    mentions: list[Span]
    evidence: list[Span]
    cues: list[Span] = Field(default_factory=list, description=(
        "what decided the label: the stance words in the evidence (e.g. رحّب, رفض), or, where there "
        "are none, the actor's own quoted or reported words the stance head read; empty for a "
        "neutral actor"))


class StanceResult(Scored):
    """The article's stance toward one target (and each actor's, when actors were asked for)."""

    target: str
    actors: Optional[list[ActorStance]] = None


class Entity(BaseModel):
    """A named entity; ``text == request.text[start:end]`` (Python code points)."""

    text: str
    label: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    score: float = Field(ge=0, le=1)


class ModelRef(BaseModel):
    """The model that produced a result."""

    name: str
    version: str


class LabelResult(BaseModel):
    """Labels of one article; a task that was not asked for is null / empty."""

    topic: Optional[Scored] = None
    stance: list[StanceResult] = Field(default_factory=list)
    entities: list[Entity] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    model: ModelRef


class BatchResult(BaseModel):
    """Results of /label_batch, in the order of the request's items."""

    results: list[LabelResult]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the service: what went wrong and what to change."""

    error: str
    detail: Optional[list[dict]] = None


class InfoResponse(BaseModel):
    """What GET /info reports."""

    model: dict = Field(description="tag, name, version")
    backbone: dict = Field(description="name (a hub id, 'offline' or a local folder's own name) and "
                           "build manifest; never a path on the server")
    tasks: dict[str, list[str]] = Field(description="API task -> labels (entity types for 'entities')")
    windowing: dict
    dev_metrics: dict
    limits: dict
    auth_required: bool
    reload: dict | None = Field(None, description="live model, what it follows, last reload and last reload error")
    engine: str | None = Field(None, description="numeric engine running the model: fp32, onnx-int8 or torch-int8 (KHABAR_ENGINE)")
    hybrid: dict = Field(default_factory=dict, description="per task (topic, stance): the parts blended with "
                         "the encoder, the stacker's weight on each, the decision offsets; empty when the "
                         "model has no hybrid heads")
