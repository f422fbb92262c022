"""End-to-end tests of the labelling service over HTTP: the real `bentoml serve`, the tiny model.

One server for the module, with small limits set through the environment (which also checks that
they are configurable). The Arabic sentences are written for these tests.
"""
from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from khabar.serving.schemas import BatchResult, InfoResponse, LabelResult
from khabar.models.normalize import normalize
from service_server import decorate, eager_ner_copy, running, sample_sentences

# KHABAR_MAX_BATCH_SIZE=4: a 20-item /label_batch is split over several model calls.
LIMITS = {"KHABAR_MAX_CHARS": "3000", "KHABAR_MAX_BODY_BYTES": "32768", "KHABAR_MAX_BATCH_ITEMS": "20",
          "KHABAR_MAX_BATCH_SIZE": "4"}

CAIRO = ("استقبل الرئيس المصري في القاهرة وفدًا من جامعة الدول العربية لبحث الأزمة في السودان، "
         "وأكد وزير الخارجية أن الحل السياسي هو الطريق الوحيد.")
# Tashkeel and tatweel: normalization removes them, offsets must still index this string.
AMMAN = "قَالَ المتحـــدث باسم الحكومة الأردنية في عمّان إن الاقتصاد سينمو هذا العام بنسبة ثلاثة في المئة."
# An emoji (outside the BMP) before the entities: offsets are code points, not UTF-16 units.
RIYADH = "🎉 فاز نادي الهلال على النصر في الرياض بهدفين، وقال المدرب Jorge Jesus إن الفريق قدّم مباراة كبيرة."
PARAGRAPHS = [
    "أعلن البنك المركزي المغربي في الرباط رفع سعر الفائدة لمواجهة ارتفاع الأسعار.",
    "وقال محافظ البنك عبد اللطيف الجواهري إن التضخم سيتراجع خلال الأشهر المقبلة.",
    "وفي تونس، قررت الحكومة دعم أسعار الخبز والحليب للأسر محدودة الدخل.",
    "أما في الجزائر فقد أعلنت وزارة الطاقة عن اكتشاف حقل غاز جديد في الجنوب.",
    "ورحب صندوق النقد الدولي بهذه الخطوات ودعا إلى إصلاحات أوسع في المنطقة.",
]
# Several 64-token windows of the tiny model: entities are merged across windows.
LONG = " ".join(PARAGRAPHS * 4)
TEXTS = [CAIRO, AMMAN, RIYADH, LONG]
TARGETS = ["الحل السياسي للأزمة", "رفع سعر الفائدة"]


@pytest.fixture(scope="module")
def model_tag(tiny_loaded) -> str:
    """The tiny model, tagging entities eagerly (see eager_ner_copy)."""
    return eager_ner_copy(tiny_loaded)


@pytest.fixture(scope="module")
def server(model_tag, tmp_path_factory):
    with running(model_tag, tmp_path_factory.mktemp("service_api") / "server.log", **LIMITS) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def info(client):
    resp = client.get("/info")
    assert resp.status_code == 200, resp.text
    return resp.json()


def check_result(result: dict, text: str, targets: list[str], info: dict) -> None:
    """Schema, probabilities, stance order and the offset invariant of one /label answer."""
    LabelResult.model_validate(result)
    topic = result["topic"]
    if topic is not None:
        assert topic["label"] in info["tasks"]["topic"]
        assert set(topic["scores"]) == set(info["tasks"]["topic"])
        assert sum(topic["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert topic["score"] == pytest.approx(max(topic["scores"].values()))
    assert [s["target"] for s in result["stance"]] == targets
    for s in result["stance"]:
        assert s["label"] in info["tasks"]["stance"]
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    last_end = 0
    for ent in result["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"], ent
        assert ent["label"] in info["tasks"]["entities"]
        assert ent["start"] >= last_end and ent["end"] > ent["start"]  # ordered, not overlapping
        assert ent["text"] == ent["text"].strip()
        last_end = ent["end"]
    assert result["model"] == {"name": info["model"]["name"], "version": info["model"]["version"]}


def test_label_schema_and_offsets(client, info):
    for text in TEXTS:
        resp = client.post("/label", json={"text": text, "targets": TARGETS})
        assert resp.status_code == 200, resp.text
        check_result(resp.json(), text, TARGETS, info)


def test_offsets_exact_through_normalization(client, info):
    """Sentences of the NER sample, decorated with what normalization removes: the entities are
    the same as in the plain sentence, at offsets into the decorated string."""
    plain = sample_sentences(20)
    decorated = [decorate(t, k) for k, t in enumerate(plain)]
    got = {}
    for name, texts in (("plain", plain), ("decorated", decorated)):
        resp = client.post("/label_batch", json={"items": [{"text": t, "tasks": ["entities"]} for t in texts]})
        assert resp.status_code == 200, resp.text
        got[name] = resp.json()["results"]
    assert sum(len(r["entities"]) for r in got["decorated"]) > 0, "the invariant was checked on real entities"
    for text, result, reference in zip(decorated, got["decorated"], got["plain"]):
        check_result(result, text, [], info)
        assert [e["label"] for e in result["entities"]] == [e["label"] for e in reference["entities"]]
        assert [normalize(e["text"]).text for e in result["entities"]] == \
               [normalize(e["text"]).text for e in reference["entities"]]


def test_long_article_entities_span_windows(client, info):
    result = client.post("/label", json={"text": LONG}).json()
    check_result(result, LONG, [], info)
    assert result["topic"] is not None
    # The same paragraph repeats four times across windows: anything found in the first copy of
    # a paragraph is found in the later copies too, at the shifted offsets.
    if result["entities"]:
        starts = {e["start"] for e in result["entities"]}
        assert max(starts) > len(LONG) // 2


def test_tasks_subset(client, info):
    only_topic = client.post("/label", json={"text": CAIRO, "targets": TARGETS, "tasks": ["topic"]}).json()
    assert only_topic["topic"] is not None and only_topic["stance"] == [] and only_topic["entities"] == []
    only_entities = client.post("/label", json={"text": CAIRO, "tasks": ["entities"]}).json()
    assert only_entities["topic"] is None and only_entities["stance"] == []
    stance_no_targets = client.post("/label", json={"text": CAIRO, "tasks": ["stance"]}).json()
    assert any("targets" in w for w in stance_no_targets["warnings"])


def test_mostly_latin_text_is_labelled_with_a_warning(client, info):
    text = "The central bank in Rabat raised interest rates, said the governor في الرباط."
    resp = client.post("/label", json={"text": text})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    check_result(result, text, [], info)
    assert any("not Arabic" in w for w in result["warnings"])


def test_batch_keeps_order_and_matches_single_calls(client, info):
    items = [{"text": t, "targets": TARGETS[:1]} for t in TEXTS] + [{"text": CAIRO, "tasks": ["topic"]}]
    resp = client.post("/label_batch", json={"items": items})
    assert resp.status_code == 200, resp.text
    results = BatchResult.model_validate(resp.json()).results
    assert len(results) == len(items)
    for item, result in zip(items, resp.json()["results"]):
        single = client.post("/label", json=item).json()
        if single["topic"] is None:
            assert result["topic"] is None
        else:
            assert result["topic"]["label"] == single["topic"]["label"]
            assert result["topic"]["score"] == pytest.approx(single["topic"]["score"], abs=1e-4)
        assert [(e["start"], e["end"], e["label"]) for e in result["entities"]] == \
               [(e["start"], e["end"], e["label"]) for e in single["entities"]]
        assert [s["label"] for s in result["stance"]] == [s["label"] for s in single["stance"]]


def test_batch_split_over_model_calls_keeps_order(client):
    items = [{"text": PARAGRAPHS[i % 5], "targets": [f"الهدف رقم {i}"]} for i in range(20)]
    resp = client.post("/label_batch", json={"items": items})
    assert resp.status_code == 200, resp.text
    assert [r["stance"][0]["target"] for r in resp.json()["results"]] == [f"الهدف رقم {i}" for i in range(20)]


BAD = [
    # (name, body or raw bytes, expected status, words the message must contain)
    ("empty text", {"text": ""}, 422, ["text", "empty"]),
    ("whitespace text", {"text": " \n\t "}, 422, ["text", "whitespace"]),
    ("missing text", {"targets": ["x"]}, 422, ["text", "missing"]),
    ("text is a number", {"text": 42}, 422, ["text", "string"]),
    ("text is null", {"text": None}, 422, ["text"]),
    ("targets not a list", {"text": CAIRO, "targets": "الحل"}, 422, ["targets", "array"]),
    ("target not a string", {"text": CAIRO, "targets": [1]}, 422, ["targets.0"]),
    ("too many targets", {"text": CAIRO, "targets": [f"هدف {i}" for i in range(17)]}, 422, ["targets", "16"]),
    ("empty target", {"text": CAIRO, "targets": ["الحل", "  "]}, 422, ["target 1", "empty"]),
    ("unknown task", {"text": CAIRO, "tasks": ["sentiment"]}, 422, ["tasks.0", "topic"]),
    ("actors not a list", {"text": CAIRO, "targets": ["x"], "actors": "الحكومة"}, 422, ["actors", "array"]),
    ("actor not a string", {"text": CAIRO, "targets": ["x"], "actors": ["الحكومة", 7]}, 422, ["actors.1"]),
    ("empty actor", {"text": CAIRO, "targets": ["x"], "actors": ["الحكومة", " "]}, 422, ["actor 1", "empty"]),
    ("too many actors", {"text": CAIRO, "targets": ["x"], "actors": [f"طرف {i}" for i in range(17)]}, 422,
     ["actors", "16"]),
    ("empty task list", {"text": CAIRO, "tasks": []}, 422, ["tasks"]),
    ("misspelt field", {"text": CAIRO, "target": ["x"]}, 422, ["target", "unknown field"]),
    ("array body", [CAIRO], 422, []),
    ("invalid JSON", b'{"text": "abc"', 422, ["not valid JSON"]),
    ("invalid UTF-8", b'{"text": "\xff\xfe"}', 422, []),
    ("deeply nested", b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422, []),
    ("text over the limit", {"text": "ب" * 3001}, 413, ["text", "3000"]),
    ("body over the byte limit", {"text": "ب" * 2000, "targets": ["ت" * 300] * 16 + ["x" * 9000]}, 413, ["32768", "KHABAR_MAX_BODY_BYTES"]),
]


@pytest.mark.parametrize("name,body,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx(client, name, body, status, words):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = client.post("/label", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]
    assert isinstance(message, str) and len(message) > 10
    for word in words:
        assert word.lower() in message.lower(), message


def test_actors_come_back_under_each_target_with_exact_offsets(client):
    text = ("رحبت الحكومة العراقية بالاتفاق. أما الفصائل المسلحة فقد رفضت الاتفاق، وقالت الفصائل إنه لا يلزمها.")
    body = client.post("/label", json={"text": text, "targets": ["الاتفاق", "الانتخابات"], "tasks": ["topic"],
                                       "actors": ["الحكومة العراقية", "الفصائل المسلحة"]}).json()
    assert body["entities"] == []  # found for the actors, not asked for
    assert [s["target"] for s in body["stance"]] == ["الاتفاق", "الانتخابات"]
    for entry in body["stance"]:
        actors = {a["actor"]: a for a in entry["actors"]}
        assert {"الحكومة العراقية", "الفصائل المسلحة"} <= set(actors)
        assert [m["text"] for m in actors["الفصائل المسلحة"]["mentions"]] == ["الفصائل المسلحة", "الفصائل"]
        for a in entry["actors"]:
            assert a["label"] in ("favor", "against", "neutral")
            for span in a["mentions"] + a["evidence"]:
                assert text[span["start"]: span["end"]] == span["text"]
    plain = client.post("/label", json={"text": text, "targets": ["الاتفاق"]}).json()
    assert plain["stance"][0].get("actors") is None  # an addition only when asked for
    batch = client.post("/label_batch", json={"items": [{"text": text, "targets": ["الاتفاق"], "actors": ["الحكومة العراقية"]}]})
    assert batch.status_code == 200 and batch.json()["results"][0]["stance"][0]["actors"]


def test_other_bad_requests(client):
    as_form = client.post("/label", content=b"text=abc", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == 415 and "application/json" in as_form.json()["error"]
    assert client.get("/label").status_code == 405
    too_many = client.post("/label_batch", json={"items": [{"text": "نص"}] * 21})
    assert too_many.status_code == 413 and "items" in too_many.json()["error"]
    empty = client.post("/label_batch", json={"items": []})
    assert empty.status_code == 422 and "items" in empty.json()["error"]
    bad_item = client.post("/label_batch", json={"items": [{"text": CAIRO}, {"text": " "}]})
    assert bad_item.status_code == 422 and "items.1.text" in bad_item.json()["error"]
    too_long = client.post("/label_batch", json={"items": [{"text": "ب" * 2000}] * 2})
    assert too_long.status_code in (200, 413)  # 4,000 chars: under KHABAR_MAX_BATCH_CHARS' default
    # The batching hop is internal: from outside it does not exist.
    internal = client.post("/internal/label_many", json={"items": [{"text": CAIRO}]})
    assert internal.status_code == 404


def test_info_reports_model_and_limits(client, info, model_tag, tiny_backbone):
    InfoResponse.model_validate(info)
    assert info["model"]["tag"] == model_tag
    # The tiny backbone is a local folder: callers see its name, not where it lies on the server.
    assert info["backbone"] == {"name": tiny_backbone.name}
    assert str(tiny_backbone) not in json.dumps(info)
    assert set(info["tasks"]) == {"topic", "stance", "entities"}
    assert info["limits"]["max_chars"] == 3000 and info["limits"]["max_body_bytes"] == 32768
    assert info["dev_metrics"], "the dev metrics stored with the model are reported"
    assert info["auth_required"] is False
    assert info["engine"] == "fp32", "the engine KHABAR_ENGINE names (tests/conftest.py pins fp32)"


def test_backbone_for_callers_never_shows_a_path():
    from khabar.serving.service import backbone_for_callers

    hub = {"name": "aubmindlab/bert-base-arabertv02", "resolved": "aubmindlab/bert-base-arabertv02"}
    assert backbone_for_callers(hub) == {"name": "aubmindlab/bert-base-arabertv02"}
    built = {"name": "offline", "resolved": "/srv/khabar/backbones/e5-small-ar", "manifest": {"builder_version": 3}}
    assert backbone_for_callers(built) == {"name": "offline", "manifest": {"builder_version": 3}}
    for name in ("/srv/encoders/my-bert", "./encoders/my-bert", "~/my-bert", "encoders/my-bert"):
        assert backbone_for_callers({"name": name, "resolved": "/srv/encoders/my-bert"}) == {"name": "my-bert"}


def test_probes_metrics_and_docs(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    metrics = client.get("/metrics").text
    assert "bentoml_service_request_total" in metrics
    assert 'bentoml_service_adaptive_batch_size_count{method_name="label_many"' in metrics
    assert "khabar_model_call_articles_count" in metrics
    spec = client.get("/docs.json").json()
    assert {"/label", "/label_batch", "/info"} <= set(spec["paths"])
    assert "/internal/label_many" not in spec["paths"]
    assert {"413", "422", "401"} <= set(spec["paths"]["/label"]["post"]["responses"])
    schemas = spec["components"]["schemas"]
    assert {"LabelResult", "Entity", "StanceResult", "InfoResponse", "ErrorResponse"} <= set(schemas)
    label_in = json.dumps(schemas["LabelRequestIODescriptor"])
    assert '"maxLength": 3000' in label_in  # the documented limit is the configured one


def _histogram(metrics: str, name: str) -> tuple[float, float]:
    """(count, sum) of a Prometheus histogram summed over its label sets."""
    count = sum(float(v) for v in re.findall(rf"^{name}_count(?:{{[^}}]*}})? (\S+)$", metrics, re.M))
    total = sum(float(v) for v in re.findall(rf"^{name}_sum(?:{{[^}}]*}})? (\S+)$", metrics, re.M))
    return count, total


def test_concurrent_requests_are_batched_and_answered_correctly(client, server, info):
    texts = [f"{p} ({i})" for i, p in enumerate(PARAGRAPHS * 4)][:16]
    expected = {t: client.post("/label", json={"text": t}).json() for t in texts}
    calls0, articles0 = _histogram(client.get("/metrics").text, "khabar_model_call_articles")

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:
            return await asyncio.gather(*(ac.post("/label", json={"text": t}) for t in texts))

    responses = asyncio.run(burst())
    calls1, articles1 = _histogram(client.get("/metrics").text, "khabar_model_call_articles")
    for text, resp in zip(texts, responses):
        assert resp.status_code == 200, resp.text
        got, want = resp.json(), expected[text]
        check_result(got, text, [], info)
        assert got["topic"]["label"] == want["topic"]["label"]
        assert got["topic"]["score"] == pytest.approx(want["topic"]["score"], abs=1e-4)
        assert [(e["start"], e["end"], e["label"]) for e in got["entities"]] == \
               [(e["start"], e["end"], e["label"]) for e in want["entities"]]
    assert articles1 - articles0 == len(texts)
    # Fewer model calls than articles: some calls labelled several requests at once.
    assert calls1 - calls0 < len(texts), (calls1 - calls0, articles1 - articles0)


def test_sustained_concurrency_has_no_errors(server):
    """160 requests from 8 clients: more than 100 batching calls, where BentoML 1.4.40 renews
    its self-call session under the calls in flight (the service retries them)."""
    async def worker(ac, k):
        return [await ac.post("/label", json={"text": f"{PARAGRAPHS[i % 5]} {k}-{i}", "tasks": ["topic"]})
                for i in range(20)]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:
            return await asyncio.gather(*(worker(ac, k) for k in range(8)))

    statuses = [r.status_code for batch in asyncio.run(run()) for r in batch]
    assert statuses == [200] * 160, [s for s in statuses if s != 200][:5]
