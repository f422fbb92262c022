"""Property-based fuzzing of the live service with schemathesis, from the service's own /docs.json.

Every operation of the published schema gets generated requests (valid ones and, in
schemathesis' negative mode, invalid ones); each answer must be no 5xx, a documented status and content
type, and a body valid against the documented response schema. The tiny test model serves.

``KHABAR_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 260: about 1,050
requests, under a minute on 2 cores); ``KHABAR_FUZZ_MIN_REQUESTS`` (default 1,000) is the total
the last test requires. Generation is derandomized, so every run sends the same requests.
"""
from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service_server import running

EXAMPLES = int(os.environ.get("KHABAR_FUZZ_EXAMPLES", "260"))
MIN_REQUESTS = int(os.environ.get("KHABAR_FUZZ_MIN_REQUESTS", "1000"))
# Small limits keep generated articles cheap for the model; the schema publishes the same limits.
LIMITS = {"KHABAR_MAX_CHARS": "2000", "KHABAR_MAX_BODY_BYTES": "65536", "KHABAR_MAX_BATCH_ITEMS": "8",
          "KHABAR_MAX_TARGETS": "4", "KHABAR_MAX_TARGET_CHARS": "100"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SENT: dict[str, int] = {}


@pytest.fixture(scope="module")
def server(tiny_model_tag, tmp_path_factory):
    with running(tiny_model_tag, tmp_path_factory.mktemp("fuzz") / "server.log", **LIMITS) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(server):
    """The live service's own OpenAPI document, as schemathesis reads it."""
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    return schemathesis.openapi.from_dict(spec)


# schemathesis' pytest plugin (`from_fixture`) fails under pytest 9 ("'Function' object has no
# attribute '_nodeid'"), so each operation's strategy is driven by Hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_generated_requests_get_documented_answers(api_schema, server, mode):
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def fuzz(case):
            key = f"{case.method} {case.path}"
            SENT[key] = SENT.get(key, 0) + 1
            case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=60)

        try:
            fuzz()
        except Unsatisfiable:
            # An operation with no inputs (GET /info) has no invalid request to generate.
            assert mode is GenerationMode.NEGATIVE, operation.label


def test_every_operation_was_fuzzed_and_server_is_healthy(server):
    """Runs after the generated tests (file order): every published operation got requests,
    the total reaches the configured minimum, and the server still answers."""
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    operations = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    assert SENT, "no generated request was sent (did the parametrized test run first?)"
    assert operations <= set(SENT), f"operations never fuzzed: {sorted(operations - set(SENT))}"
    total = sum(SENT.values())
    print(f"\nschemathesis sent {total} requests: {dict(sorted(SENT.items()))}")
    assert total >= MIN_REQUESTS, f"only {total} requests; KHABAR_FUZZ_MIN_REQUESTS={MIN_REQUESTS}"
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    ok = httpx.post(f"{server.url}/label", json={"text": "أعلنت الحكومة في بغداد خطة جديدة."}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_published_schema_allows_a_null_topic(server):
    """A task not asked for is null (documented); the published schema must allow that as it is read."""
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    case = schema["/label"]["POST"].Case(body={"text": "أعلنت الحكومة في بغداد خطة جديدة.", "tasks": ["entities"]},
                                         media_type="application/json")
    response = case.call_and_validate(base_url=server.url, checks=[response_schema_conformance], timeout=60)
    assert response.json()["topic"] is None
