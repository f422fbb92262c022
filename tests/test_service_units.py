"""The service's parts that need no server: request models, error messages, the default model
of `khabar serve` (its settings: tests/test_settings.py).
"""
from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from khabar.serving.middleware import describe_validation
from khabar.serving.schemas import SETTINGS, BatchRequest, LabelRequest


def test_label_request_accepts_and_dedups():
    req = LabelRequest.model_validate_json('{"text": "نص الخبر", "targets": ["هدف"], "tasks": ["topic", "topic"]}')
    assert req.tasks == ["topic"] and req.targets == ["هدف"]
    assert LabelRequest(text="نص").tasks is None  # None: every task the model has


@pytest.mark.parametrize("body,kind", [
    ('{"text": "   "}', "empty_text"),
    ('{"text": ""}', "empty_text"),
    ('{"text": 1}', "string_type"),
    ('{"text": "x", "targets": ["ok", " "]}', "empty_target"),
    ('{"text": "x", "tasks": ["ner"]}', "literal_error"),
    ('{"text": "x", "extra": 1}', "extra_forbidden"),
    ('{"text": "x", "targets": ' + str(["t"] * (SETTINGS.max_targets + 1)).replace("'", '"') + "}", "too_long"),
    ('{"text": "x"', "json_invalid"),
])
def test_label_request_rejects(body, kind):
    with pytest.raises(ValidationError) as info:
        LabelRequest.model_validate_json(body)
    assert kind in {e["type"] for e in info.value.errors()}


def test_batch_request_total_size():
    big = "ب" * (SETTINGS.max_chars // 2 + 1)
    n = SETTINGS.max_batch_chars // len(big) + 1
    if n > SETTINGS.max_batch_items:
        pytest.skip("the item limit is reached before the character limit with these settings")
    with pytest.raises(ValidationError, match="KHABAR_MAX_BATCH_CHARS"):
        BatchRequest(items=[LabelRequest(text=big)] * n)


def test_describe_validation_messages():
    status, text = describe_validation([
        {"type": "string_too_long", "loc": ["text"], "msg": "String should have at most 5 characters"}])
    assert status == 413 and text.startswith("text: String should have at most 5") and "GET /info" in text
    status, text = describe_validation([
        {"type": "missing", "loc": ["items", 2, "text"], "msg": "Field required"},
        {"type": "extra_forbidden", "loc": ["foo"], "msg": "Extra inputs are not permitted"}])
    assert status == 422 and "items.2.text: required field is missing" in text and "foo: unknown field" in text
    status, text = describe_validation([{"type": "json_invalid", "loc": [], "msg": "Invalid JSON: EOF"}])
    assert status == 422 and "not valid JSON" in text
    status, _ = describe_validation([{"type": "too_long", "loc": ["targets"], "msg": "List should have at most 16 items"}])
    assert status == 422
    status, _ = describe_validation([{"type": "too_long", "loc": ["items"], "msg": "List should have at most 256 items"}])
    assert status == 413


def test_default_tag_prefers_promoted(tiny_loaded):
    from khabar.commands.serve import _stored_models, default_tag
    from khabar.models.registry import promote, read_stages
    from khabar.models.store import save_model

    name = f"khabar-serve-test-{uuid.uuid4().hex[:8]}"  # a store of its own
    older = save_model(tiny_loaded.model, tiny_loaded.tokenizer, training={}, name=name)
    newest = save_model(tiny_loaded.model, tiny_loaded.tokenizer, training={}, name=name)
    models = _stored_models(name)
    assert str(models[0].tag) == newest
    before = read_stages().get("promoted")
    assert default_tag(models) == newest, "nothing of this name promoted: the newest"
    promote(older, reason="test")
    try:
        assert default_tag(models) == older
    finally:
        if before:
            promote(before, reason="test restores")
