"""The /ui page driven in headless Chromium by Playwright.

Playwright drives the system's Chromium (``make setup-browser``: Debian's ``chromium``) through
``executable_path``; no ``playwright install``, so no browser is ever downloaded. The test types
an article and targets, clicks, meets the token prompt, pastes the token, and checks the
highlighted entities against the API. The screenshot lands in KHABAR_HOME/reports/ui.png.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from service_server import decorate, eager_ner_copy, running, sample_sentences

CHROMIUM = os.environ.get("KHABAR_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (run `make setup-browser`, "
                                                "or apt-get install chromium)"),
]
TOKEN = "ui-test-token"
TARGETS = ["الحل السياسي للأزمة", "دعم الاستثمار"]
PAGE_READY = "document.readyState === 'complete' && !!document.getElementById('analyze')"


def make_article() -> str:
    """Three sentences of the project's NER sample, decorated (tashkeel, tatweel, an emoji) so
    that the page's highlights go through normalization and code-point offsets."""
    return "\n".join(decorate(t, k) for k, t in enumerate(sample_sentences(3)))


def wait_for(page: Page, expression: str, timeout_s: float = 120) -> Any:
    """Wait until a JavaScript expression is truthy and return its value; on timeout, fail
    with what the page shows (status, error, address, whether it is busy)."""
    try:
        return page.wait_for_function(expression, timeout=timeout_s * 1000, polling=200).json_value()
    except PlaywrightTimeout:
        state = page.evaluate("""JSON.stringify({status: document.getElementById('status')?.textContent,
            error: document.getElementById('error')?.textContent, url: location.href,
            busy: document.getElementById('analyze')?.disabled})""")
        raise AssertionError(f"timed out waiting for {expression}; page: {state}") from None


def type_into(page: Page, element_id: str, text: str) -> None:
    """Type text into an input as a user pasting it would (focus, then input events)."""
    page.locator(f"#{element_id}").fill(text)


def screenshot(page: Page, path: Path) -> None:
    """Save a PNG of the whole page."""
    # A viewport as tall as the page rather than full_page (captureBeyondViewport), which shifts
    # right-to-left pages sideways.
    width, height = page.evaluate("[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    page.set_viewport_size({"width": width, "height": height})
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path)


@pytest.fixture(scope="module")
def server(tiny_loaded, tmp_path_factory):
    with running(eager_ner_copy(tiny_loaded), tmp_path_factory.mktemp("service_ui") / "server.log", KHABAR_API_TOKEN=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser) -> Iterator[Page]:
    """A fresh context (its own sessionStorage) and page for each test."""
    context = browser.new_context(viewport={"width": 1280, "height": 1500})
    try:
        yield context.new_page()
    finally:
        context.close()


def test_page_labels_an_article(server, page, _isolated_home):
    article = make_article()
    expected = httpx.post(f"{server.url}/label", json={"text": article, "targets": TARGETS},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).json()
    assert expected["entities"], "the eager-NER tiny model tags entities in this article"

    page.goto(f"{server.url}/ui")
    wait_for(page, PAGE_READY)
    assert page.evaluate("document.documentElement.dir") == "rtl"
    type_into(page, "article", article)
    for target in TARGETS:
        type_into(page, "target-input", target)
        page.click("#add-target")
    assert page.evaluate("document.querySelectorAll('#targets li').length") == len(TARGETS)

    # No token yet: the server answers 401 and the page says what to do.
    page.click("#analyze")
    error = wait_for(page, "!document.getElementById('error').hidden && document.getElementById('error').textContent")
    assert "رمز" in error and page.evaluate("document.getElementById('token-box').open")

    type_into(page, "token", TOKEN)
    page.evaluate("document.getElementById('token').blur()")  # 'change': the page stores it, asks /info again
    assert expected["model"]["version"] in wait_for(page, "document.getElementById('model').textContent")
    page.click("#analyze")
    wait_for(page, "!document.getElementById('result').hidden")
    assert page.evaluate("document.getElementById('error').hidden")
    assert page.evaluate("sessionStorage.getItem('khabar.token')") == TOKEN

    marks = page.evaluate("""Array.from(document.querySelectorAll('#entities-text mark.ent')).map(m => ({
        text: m.textContent, label: m.dataset.label, start: +m.dataset.start, end: +m.dataset.end}))""")
    assert [(m["start"], m["end"], m["label"]) for m in marks] == \
           [(e["start"], e["end"], e["label"]) for e in expected["entities"]]
    for m in marks:
        assert article[m["start"]:m["end"]] == m["text"]
    # The whole article is shown, unchanged, around the highlights.
    assert page.evaluate("document.getElementById('entities-text').textContent") == article
    legend = set(page.evaluate("Array.from(document.querySelectorAll('#legend span')).map(s => s.dataset.type)"))
    assert {m["label"] for m in marks} <= legend
    assert page.evaluate("document.getElementById('topic-label').textContent") == expected["topic"]["label"]
    assert page.evaluate("document.querySelectorAll('#topic .bar').length") == len(expected["topic"]["scores"])
    assert page.evaluate("document.querySelectorAll('#stance tr.stance-row').length") == len(TARGETS)

    screenshot(page, _isolated_home / "reports" / "ui.png")
    assert (_isolated_home / "reports" / "ui.png").stat().st_size > 10_000


ACTOR_ARTICLE = ("رحبت الحكومة العراقية بالاتفاق الأمني. أما الفصائل المسلحة فقد أعلنت أنها ترفض الاتفاق، "
                 "وقالت الفصائل إنه لا يلزمها.")
ACTORS = ["الحكومة العراقية", "الفصائل المسلحة"]


def test_page_shows_each_actors_stance_and_evidence(server, page):
    """Actors typed on the page come back under their target, with their stance and the evidence
    sentences highlighted, as the API answers them."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    expected = httpx.post(f"{server.url}/label", json={"text": ACTOR_ARTICLE, "targets": TARGETS[:1], "actors": ACTORS},
                          headers=headers, timeout=120).json()
    want = {a["actor"]: a for a in expected["stance"][0]["actors"]}
    assert set(ACTORS) <= set(want)

    page.goto(f"{server.url}/ui")
    wait_for(page, PAGE_READY)
    page.evaluate("token => sessionStorage.setItem('khabar.token', token)", TOKEN)
    page.reload()
    wait_for(page, PAGE_READY)
    type_into(page, "article", ACTOR_ARTICLE)
    type_into(page, "target-input", TARGETS[0])
    page.click("#add-target")
    for actor in ACTORS:
        type_into(page, "actor-input", actor)
        page.click("#add-actor")
    page.click("#analyze")
    wait_for(page, "!document.getElementById('result').hidden")
    shown = page.evaluate("""Array.from(document.querySelectorAll('#stance li.actor')).map(li => ({
        actor: li.dataset.actor, label: li.dataset.label,
        evidence: Array.from(li.querySelectorAll('q.evidence')).map(q => [+q.dataset.start, +q.dataset.end, q.textContent]),
        cues: Array.from(li.querySelectorAll('mark.cue')).map(m => m.textContent)}))""")
    assert {s["actor"]: s["label"] for s in shown} == {k: v["label"] for k, v in want.items()}
    for s in shown:
        assert s["evidence"], f"{s['actor']}: evidence is shown"
        for start, end, text in s["evidence"]:
            assert ACTOR_ARTICLE[start:end] == text
        # The words that decided the side are marked inside the evidence (رحبت, ترفض here).
        assert s["cues"] == [c["text"] for c in want[s["actor"]]["cues"]]
    assert {s["actor"]: s["cues"] for s in shown if s["actor"] in ACTORS} == {
        "الحكومة العراقية": ["رحبت"], "الفصائل المسلحة": ["ترفض"]}
