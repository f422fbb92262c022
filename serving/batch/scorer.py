"""Labels for a list of texts, through the same Predictor the service uses.

Shared by the local engine and the Ray actors, so both engines (and ``POST /label``) give the same
labels for the same text (and the same warnings, which go to each row's ``warnings`` column). A
row the predictor fails on becomes an error row instead of stopping the job; a failure on every
row of a batch is a broken model or environment, and stops it.
"""
from __future__ import annotations

from typing import Sequence


class ScoringError(RuntimeError):
    """Every row of a batch failed: something is wrong beyond one bad row."""


def resolve_model(tag: str, tasks: Sequence[str], actors: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The full tag (``khabar:latest`` -> ``khabar:<version>``) and the tasks to run (empty
    ``tasks``: every task the model has), checked by the predictor's rule before any row is read.

    Reads only the model's schema, so the Ray driver does not load weights it never uses. Raises
    ValueError (:class:`~khabar.models.schema.TaskError`) naming the model.
    """
    from khabar.models.schema import ModelSchema, TaskError
    from khabar.models.store import model_path

    full, path = model_path(tag)
    schema = ModelSchema.from_json((path / "schema.json").read_text(encoding="utf-8"))
    try:
        return full, schema.request_tasks(tasks or None, actors)
    except TaskError as err:
        raise TaskError(f"{err} (model {full})", err.request_field) from None


def actor_column(result: dict) -> dict:
    """Move each target's actors into one flat ``actors`` list (the output's ``actors`` column):
    ``{"target", "actor", "source", "label", "score", "scores", "mentions", "evidence"}`` rows."""
    result["actors"] = [{"target": entry["target"], **actor}
                        for entry in result["stance"] for actor in entry.pop("actors", None) or []]
    return result


def rows_or_errors(chunk, results, rows: list[dict], errors: list[dict]) -> None:
    """Turn scorer results into output rows (``id`` first) and error rows, in input order."""
    for (id_, _, source, row), (labels, reason) in zip(chunk, results):
        if labels is not None:
            rows.append({"id": id_, **labels})
        else:
            errors.append({"id": id_, "reason": reason, "source": source, "row": row})


class Scorer:
    """A loaded model plus the job's targets and tasks.

    ``tasks`` None runs every task the model has, as a service request without ``tasks`` does
    (and, like it, gives no warning about stance without targets). ``threads`` caps an ONNX
    engine's threads; torch's are the process owner's to set (the local engine, a Ray actor).
    """

    def __init__(self, tag: str, *, tasks: Sequence[str] | None, targets: Sequence[str],
                 batch_size: int = 32, threads: int | None = None, actors: Sequence[str] = ()) -> None:
        from khabar.models.engines import make_engine
        from khabar.models.predictor import Predictor
        from khabar.models.store import load_model

        loaded = load_model(tag)
        # KHABAR_ENGINE (int8 ONNX by default, or fp32): the same switch as the service's.
        self.predictor = Predictor.from_loaded(loaded, batch_size=batch_size,
                                               engine=make_engine(None, loaded, threads=threads))
        self.tasks = list(tasks) if tasks is not None else None
        self.targets = list(targets)
        self.actors = list(actors)

    def score(self, texts: Sequence[str]) -> list[tuple[dict | None, str | None]]:
        """``(labels, None)`` per text, or ``(None, reason)`` for a text that could not be labelled."""
        from khabar.models.predictor import Article

        requests = [Article(t, self.targets, self.tasks, self.actors) for t in texts]
        try:
            return [(actor_column(r), None) for r in self.predictor.label(requests)]
        except Exception as err:  # noqa: BLE001 - find the bad row(s) one by one
            if len(texts) == 1:
                return [(None, f"labelling failed: {type(err).__name__}: {err}")]
            first = err
        out = [self.score([t])[0] for t in texts]
        if all(result is None for result, _ in out):
            raise ScoringError(f"labelling failed on every row of a batch: {type(first).__name__}: {first}")
        return out
