"""The live model's store entry corrupted, then deleted, under a running service: requests keep
being answered by the model in memory; ``POST /admin/reload`` reports the damage (500 with the
reason) and keeps the old model; ``GET /info`` says what happened."""
from __future__ import annotations

import copy
import shutil

import httpx
import pytest

from service_server import running

ARTICLE = "وقعت الحكومة العراقية في بغداد اتفاقا مع شركة النفط الوطنية لتطوير حقول البصرة"
BODY = {"text": ARTICLE, "targets": ["الاتفاق"]}


@pytest.fixture(scope="module")
def victim(tiny_loaded) -> str:
    """A copy of the tiny model under its own name: the tests damage its store entry."""
    from khabar.models.store import save_model

    return save_model(copy.deepcopy(tiny_loaded.model), tiny_loaded.tokenizer, training=tiny_loaded.training,
                      name="khabar-victim")


@pytest.fixture(scope="module")
def server(victim, tmp_path_factory):
    with running(victim, tmp_path_factory.mktemp("faults_store") / "server.log") as srv:
        yield srv


def _labels(resp: httpx.Response) -> tuple:
    assert resp.status_code == 200, resp.text
    res = resp.json()
    return res["topic"]["label"], round(res["topic"]["score"], 5), res["stance"][0]["label"], \
        [(e["start"], e["end"], e["label"]) for e in res["entities"]]


def test_damaged_then_deleted_store_entry_keeps_the_loaded_model_serving(server, victim):
    from khabar.models.store import model_path

    before = _labels(httpx.post(f"{server.url}/label", json=BODY, timeout=60))
    ok = httpx.post(f"{server.url}/admin/reload", timeout=120)
    assert ok.status_code == 200 and ok.json()["verified"] is True, ok.text

    # 1. Weights overwritten with garbage (a bad disk, a botched copy).
    _, path = model_path(victim)
    weights = path / "model.safetensors"
    weights.write_bytes(b"\x00garbage" * 1000)
    assert _labels(httpx.post(f"{server.url}/label", json=BODY, timeout=60)) == before
    bad = httpx.post(f"{server.url}/admin/reload", timeout=120)
    assert bad.status_code == 500, bad.text
    err = bad.json()["error"]
    assert err["tag"] == victim and "damaged" in err["error"], err
    info = httpx.get(f"{server.url}/info", timeout=30).json()
    assert info["reload"]["live"] == victim and info["reload"]["last_error"]["tag"] == victim
    assert _labels(httpx.post(f"{server.url}/label", json=BODY, timeout=60)) == before

    # 2. The entry removed from the store altogether.
    shutil.rmtree(path)
    gone = httpx.post(f"{server.url}/admin/reload", timeout=120)
    assert gone.status_code == 500, gone.text
    assert gone.json()["live"] == victim and gone.json()["error"]["error"]
    assert _labels(httpx.post(f"{server.url}/label", json=BODY, timeout=60)) == before
    assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
