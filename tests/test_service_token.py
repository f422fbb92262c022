"""The service with KHABAR_API_TOKEN set, serving a model that lacks the stance task; and a
service whose model cannot be loaded never reports ready.
"""
from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import replace

import httpx
import pytest

from service_server import Server, running

TOKEN = "s3cret-token-for-tests"
TEXT = "افتتح وزير الثقافة في الدوحة مهرجان الكتاب العربي بمشاركة دور نشر من مصر ولبنان والمغرب."


@pytest.fixture(scope="module")
def two_task_tag(tiny_loaded) -> str:
    """The tiny model without its stance head, stored under its own name (no training needed)."""
    from khabar.models.multitask import KhabarModel
    from khabar.models.store import save_model

    tasks = {k: v for k, v in tiny_loaded.schema.tasks.items() if k != "stance"}
    model = KhabarModel(copy.deepcopy(tiny_loaded.model.encoder), replace(tiny_loaded.schema, tasks=tasks))
    trained = {k: v for k, v in tiny_loaded.model.state_dict().items() if "stance" not in k}
    model.load_state_dict(trained, strict=True)
    return save_model(model, tiny_loaded.tokenizer, training={"dev_metrics": {}}, name="khabar-two-task")


@pytest.fixture(scope="module")
def server(two_task_tag, tmp_path_factory):
    with running(two_task_tag, tmp_path_factory.mktemp("service_token") / "server.log", KHABAR_API_TOKEN=TOKEN,
                 KHABAR_MAX_CONCURRENCY="3") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}],
                         ids=["none", "wrong", "no-scheme", "basic", "longer"])
def test_requests_without_the_token_get_401(client, headers):
    for method, path, body in [("POST", "/label", {"text": TEXT}), ("POST", "/label_batch", {"items": [{"text": TEXT}]}),
                               ("GET", "/info", None), ("GET", "/docs.json", None)]:
        resp = client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 401, (path, resp.text)
        assert "Bearer" in resp.json()["error"] and resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_token_opens_the_api(client):
    resp = client.post("/label", json={"text": TEXT}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    info = client.get("/info", headers=AUTH).json()
    assert info["auth_required"] is True
    assert "TOKEN" not in str(info) and TOKEN not in str(info)


def test_probes_metrics_and_page_stay_open(client):
    for path in ["/readyz", "/livez", "/healthz", "/metrics", "/ui/", "/ui/app.js", "/ui/app.css"]:
        assert client.get(path).status_code == 200, path
    assert client.get("/ui", follow_redirects=False).status_code in (301, 302, 307)


def test_a_task_the_model_lacks(client):
    result = client.post("/label", json={"text": TEXT, "targets": ["دعم الثقافة"]}, headers=AUTH).json()
    assert result["topic"] is not None and result["stance"] == []  # default tasks: what the model has
    resp = client.post("/label", json={"text": TEXT, "targets": ["دعم الثقافة"], "tasks": ["stance"]}, headers=AUTH)
    assert resp.status_code == 422
    assert "stance" in resp.json()["error"] and "topic" in resp.json()["error"]
    batch = client.post("/label_batch", json={"items": [{"text": TEXT}, {"text": TEXT, "tasks": ["stance"]}]},
                        headers=AUTH)
    assert batch.status_code == 422 and "items.1.tasks" in batch.json()["error"]
    actors = client.post("/label", json={"text": TEXT, "targets": ["دعم الثقافة"], "actors": ["الوزارة"]}, headers=AUTH)
    assert actors.status_code == 422 and actors.json()["error"].startswith("actors: actor stance needs a stance head")
    assert set(client.get("/info", headers=AUTH).json()["tasks"]) == {"topic", "entities"}


def test_overload_gets_429_with_retry_after(server):
    """More labelling requests in flight than KHABAR_MAX_CONCURRENCY: the rest are shed, not queued."""
    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=AUTH) as ac:
            return await asyncio.gather(*(ac.post("/label", json={"text": TEXT * 20}) for _ in range(24)))

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 429} and codes.count(200) >= 3, codes
    shed = next(r for r in responses if r.status_code == 429)
    assert shed.headers["Retry-After"] == "1" and "KHABAR_MAX_CONCURRENCY" in shed.json()["error"]


def test_not_ready_without_a_model(tiny_model_tag, tmp_path):
    """A tag that is not in the store: the worker reports why and /readyz never answers 200."""
    srv = Server("khabar:doesnotexist", tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 150
        while "no model 'khabar:doesnotexist'" not in srv.log() and time.monotonic() < deadline:
            try:
                assert httpx.get(f"{srv.url}/readyz", timeout=2).status_code != 200
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert "no model 'khabar:doesnotexist'" in srv.log()
        try:
            assert httpx.get(f"{srv.url}/readyz", timeout=2).status_code != 200
        except httpx.HTTPError:
            pass  # nothing listening is "not ready" too
    finally:
        srv.stop()
