"""Hand-written hostile input against the real service: each request gets a clear 4xx or a
correct answer within a time limit, never a 5xx, a hang or a worker crash; entity offsets stay
exact on the answered ones; afterwards the same worker still answers. Default limits (100,000
characters, 4 MiB body). The Arabic sentences are written for these tests."""
from __future__ import annotations

import httpx
import pytest

from service_server import eager_ner_copy, running

LIMIT_S = 60  # seconds any single hostile request may take on 2 busy cores
BASE = "أعلن وزير الخارجية في القاهرة أن جامعة الدول العربية ستعقد قمة في الرياض الشهر المقبل"
ZW = "\u200b\u200c\u200d\u2060\ufeff"           # zero-width space/non-joiner/joiner, word joiner, BOM
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def _sprinkle(text: str, marks: str) -> str:
    """The text with one of ``marks`` after every word and at both ends."""
    words = text.split(" ")
    return marks[0] + " ".join(w + marks[i % len(marks)] for i, w in enumerate(words)) + marks[-1]


VALID = {  # name -> text that must be answered 200 with exact offsets
    "nul characters": BASE.replace(" ", " \x00 ", 3) + "\x00",
    "control characters": "\x01\x07\x1b[31m" + BASE + "\x7f\x85",
    "bidi overrides": _sprinkle(BASE, BIDI),
    "zero-width characters": _sprinkle(BASE, ZW),
    "100,000 characters without a space": "ب" * 100_000,
    "100,000 mixed characters without a space": ("القاهرة" + "\u200b" + "x1٢" + "😀") * 8333 + "ب" * 4,
    "only emoji": "😀🇪🇬👨‍👩‍👧‍👦🏳️‍🌈 🔥🔥🔥 " * 20,
    "only Latin": "The foreign minister said in Cairo that the Arab League will meet in Riyadh next month.",
    "only digits": "0123456789 ٠١٢٣٤٥٦٧٨٩ ۰۱۲۳۴۵۶۷۸۹ " * 10,
    "mixed scripts": "الرئيس Macron زار 北京 и Москву مع وفد 한국 עם שר החוץ في 2024 " + BASE,
    "combining marks pile-up": "ب" + "\u064e\u0651\u0670" * 3000 + " " + BASE,
    "only whitespace-like separators": "\u2028\u2029\u3000\u00a0" + BASE + "\u2028",
    "one character": "ب",
}


@pytest.fixture(scope="module")
def server(tiny_loaded, tmp_path_factory):
    # Entities eagerly tagged, so the offset checks see real entities.
    with running(eager_ner_copy(tiny_loaded, name="khabar-hostile"), tmp_path_factory.mktemp("hostile") / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=LIMIT_S) as c:
        yield c


@pytest.fixture(scope="module")
def worker_pids(server):
    """The worker processes before any hostile request (compared again at the end)."""
    pids = [p.pid for p in server.workers()]
    assert pids, "the BentoML worker process was found"
    return pids


def _post(client, raw: bytes, path: str = "/label") -> httpx.Response:
    return client.post(path, content=raw, headers={"Content-Type": "application/json"})


def _check_offsets(text: str, result: dict) -> None:
    last = 0
    for ent in result["entities"]:
        assert 0 <= ent["start"] < ent["end"] <= len(text), ent
        assert text[ent["start"]:ent["end"]] == ent["text"], ent
        assert ent["start"] >= last, result["entities"]
        last = ent["end"]


@pytest.mark.parametrize("name", list(VALID))
def test_hostile_but_valid_text_is_answered_with_exact_offsets(client, worker_pids, name):
    text = VALID[name]
    resp = client.post("/label", json={"text": text, "targets": ["القمة العربية"]})
    assert resp.status_code == 200, resp.text[:500]
    result = resp.json()
    _check_offsets(text, result)
    # A text with nothing the model can read (only emoji) gets no labels and says so.
    assert len(result["stance"]) == 1 or any("nothing left" in w for w in result["warnings"]), result
    # The same text inside a batch gets the same entities.
    batch = client.post("/label_batch", json={"items": [{"text": "نص قصير"}, {"text": text}]})
    assert batch.status_code == 200, batch.text[:500]
    assert [(e["start"], e["end"]) for e in batch.json()["results"][1]["entities"]] == \
           [(e["start"], e["end"]) for e in result["entities"]]


def test_offsets_checked_on_real_entities(client, worker_pids):
    """The offset checks above are not vacuous: the eager model finds entities in these texts."""
    found = 0
    for name in ("nul characters", "bidi overrides", "zero-width characters", "mixed scripts"):
        found += len(client.post("/label", json={"text": VALID[name]}).json()["entities"])
    assert found > 0


def _chunks(total: int, size: int = 1 << 20):
    yield b'{"text": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


REJECTED = [
    # (name, raw body, expected status)
    ("10 MB body", b'{"text": "' + b"a" * 10_000_000 + b'"}', 413),
    ("100,001 characters", ('{"text": "' + "ب" * 100_001 + '"}').encode(), 413),
    ("deeply nested arrays", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422),
    ("deeply nested objects", b'{"text": "x", "targets": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}", 422),
    ("invalid UTF-8", b'{"text": "\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc \xed\xa0\x80"}', 422),
    ("overlong UTF-8 encoding", b'{"text": "\xc0\xaf\xe0\x80\xaf"}', 422),
    ("raw NUL byte in the JSON", b'{"text": "abc\x00def"}', 422),
    ("NUL bytes only", b"\x00" * 1000, 422),
    ("UTF-16 body", '{"text": "مرحبا"}'.encode("utf-16"), 422),
    ("truncated JSON", b'{"text": "\xd8\xa8', 422),
    ("huge number", b'{"text": "x", "targets": [' + b"9" * 100_000 + b"]}", 422),
    ("duplicate keys", b'{"text": 1, "text": 2, "text": [3]}', 422),
    ("empty body", b"", 422),
]


@pytest.mark.parametrize("name,raw,status", REJECTED, ids=[r[0] for r in REJECTED])
def test_hostile_body_gets_a_clear_4xx(client, worker_pids, name, raw, status):
    resp = _post(client, raw)
    assert resp.status_code == status, resp.text[:500]
    message = resp.json()["error"]
    assert isinstance(message, str) and len(message) > 10, message


def test_lone_surrogate_escapes_are_not_a_server_error(client, worker_pids):
    """JSON may spell a lone UTF-16 surrogate (\\ud800); it cannot be encoded back to UTF-8."""
    resp = _post(client, b'{"text": "\\ud800 \\udfff \xd8\xa8\xd8\xa7\xd8\xa8"}')
    assert resp.status_code in (200, 422), resp.text[:500]
    if resp.status_code == 200:
        _check_offsets("\ud800 \udfff باب", resp.json())


def test_streamed_10_mb_body_without_length_is_cut_off(client, worker_pids):
    """A chunked body with no Content-Length is refused once it passes the limit, not read to the end."""
    resp = client.post("/label", content=_chunks(10_000_000), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text[:500]
    assert "KHABAR_MAX_BODY_BYTES" in resp.json()["error"]


def test_batch_of_hostile_items(client, worker_pids):
    items = [{"text": VALID[name]} for name in ("only emoji", "only digits", "bidi overrides", "one character")]
    resp = client.post("/label_batch", json={"items": items})
    assert resp.status_code == 200, resp.text[:500]
    for item, result in zip(items, resp.json()["results"]):
        _check_offsets(item["text"], result)


def test_server_still_healthy_with_the_same_worker(client, server, worker_pids):
    """Last in the file: after all of the above, the same worker answers probes and a normal request."""
    assert client.get("/readyz").status_code == 200
    resp = client.post("/label", json={"text": BASE, "targets": ["القمة العربية"]})
    assert resp.status_code == 200, resp.text
    _check_offsets(BASE, resp.json())
    assert [p.pid for p in server.workers()] == worker_pids, "a worker process was restarted"
    assert "Traceback" not in server.log(), server.log()[-3000:]
