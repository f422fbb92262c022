"""The model schema's task rule: the one check of a request's tasks (service, batch jobs and the
predictor all call it), with messages that say what to change."""
from __future__ import annotations

import pytest

from khabar.models.schema import API_TASKS, REQUEST_TASKS, TASKS, ModelSchema, TaskError

LABELS = {"topic": ["sport", "economy"], "stance": ["favor", "against", "neutral", "unrelated"],
          "ner": ["O", "B-PERS", "I-PERS"]}


def schema(*heads: str) -> ModelSchema:
    return ModelSchema(tasks={h: LABELS[h] for h in heads})


def test_one_word_per_task_and_one_mapping():
    assert tuple(API_TASKS.values()) == TASKS  # every head has exactly one API word
    assert REQUEST_TASKS == ("topic", "stance", "entities", "actors")


def test_no_tasks_means_every_task_the_model_has():
    assert schema("topic", "ner").request_tasks(None) == ["topic", "entities"]
    assert schema(*TASKS).request_tasks(["entities", "topic", "entities"]) == ["entities", "topic"]
    assert schema(*TASKS).request_tasks(["actors"]) == ["actors"]


@pytest.mark.parametrize("heads,asked,actors,field,message", [
    (TASKS, ["sentiment"], (), "tasks", "unknown task(s) ['sentiment']; choose from"),
    (TASKS, ["ner"], (), "tasks", "unknown task(s) ['ner']"),  # the API word is "entities"
    (("topic", "ner"), ["stance"], (), "tasks", "has no ['stance'] task(s); it has ['topic', 'entities']"),
    (("topic",), ["actors"], (), "tasks", "actor stance needs a stance head"),
    (("topic",), None, ("الحكومة",), "actors", "actor stance needs a stance head"),
])
def test_bad_tasks_are_refused_naming_the_field(heads, asked, actors, field, message):
    with pytest.raises(TaskError) as err:
        schema(*heads).request_tasks(asked, actors)
    assert message in str(err.value) and err.value.request_field == field
