"""The /ui page driven in headless Chromium over the Chrome DevTools Protocol.

No browser-download tool and no WebDriver: Chromium from the system (``apt-get install
chromium``; ``make setup-browser``) is started with a debugging port, and the test talks CDP over a
websocket (httpx-ws, already installed with BentoML). It types an article and targets, clicks,
meets the token prompt, pastes the token, and checks the highlighted entities against the API.
The screenshot lands in KHABAR_HOME/reports/ui.png.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service_server import decorate, eager_ner_copy, running, sample_sentences

CHROMIUM = os.environ.get("KHABAR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (run `make setup-browser`, "
                                                "or apt-get install chromium)"),
]
TOKEN = "ui-test-token"
TARGETS = ["الحل السياسي للأزمة", "دعم الاستثمار"]


def make_article() -> str:
    """Three sentences of the project's NER sample, decorated (tashkeel, tatweel, an emoji) so
    that the page's highlights go through normalization and code-point offsets."""
    return "\n".join(decorate(t, k) for k, t in enumerate(sample_sentences(3)))


class Chrome:
    """A headless Chromium and one page, driven by CDP commands."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "--window-size=1280,1500", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its debugging port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        from httpx_ws import connect_ws

        self._http = httpx.Client(timeout=60)
        self._ctx = connect_ws(ws_url, self._http, max_message_size_bytes=64 * 1024 * 1024)
        self.ws = self._ctx.__enter__()
        self._id = 0

    def send(self, method: str, **params) -> dict:
        """One CDP command; events that arrive meanwhile are skipped."""
        self._id += 1
        self.ws.send_text(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.receive_text(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        """Evaluate JavaScript in the page; return its (JSON) value."""
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120):
        """Poll a JavaScript expression until it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        state = self.js("""JSON.stringify({status: document.getElementById('status')?.textContent,
            error: document.getElementById('error')?.textContent, url: location.href,
            busy: document.getElementById('analyze')?.disabled})""")
        raise AssertionError(f"timed out waiting for {expression}; page: {state}")

    def type_into(self, element_id: str, text: str) -> None:
        """Focus an input and type text as a user would (input events fire)."""
        # Focus from script: a mouse click can land before a just-opened <details> is laid out.
        self.js(f"document.getElementById({element_id!r}).focus()")
        self.wait_for(f"document.activeElement === document.getElementById({element_id!r})")
        self.send("Input.insertText", text=text)
        self.wait_for(f"document.getElementById({element_id!r}).value.endsWith({json.dumps(text[-20:])})")

    def click(self, element_id: str) -> None:
        """A real mouse click at the element's centre."""
        x, y = self.js(f"""(() => {{ const e = document.getElementById({element_id!r});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page."""
        # A viewport as tall as the page rather than captureBeyondViewport, which shifts
        # right-to-left pages sideways.
        width, height = self.js("[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            if hasattr(self, "_ctx"):
                self._ctx.__exit__(None, None, None)
                self._http.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()


@pytest.fixture(scope="module")
def server(tiny_loaded, tmp_path_factory):
    with running(eager_ner_copy(tiny_loaded), tmp_path_factory.mktemp("service_ui") / "server.log", KHABAR_API_TOKEN=TOKEN) as srv:
        yield srv


@pytest.fixture()
def chrome(tmp_path):
    browser = Chrome(tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.close()


def test_page_labels_an_article(server, chrome, _isolated_home):
    article = make_article()
    expected = httpx.post(f"{server.url}/label", json={"text": article, "targets": TARGETS},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).json()
    assert expected["entities"], "the eager-NER tiny model tags entities in this article"

    chrome.send("Page.navigate", url=f"{server.url}/ui")
    chrome.wait_for("document.readyState === 'complete' && !!document.getElementById('analyze')")
    assert chrome.js("document.documentElement.dir") == "rtl"
    chrome.type_into("article", article)
    for target in TARGETS:
        chrome.type_into("target-input", target)
        chrome.click("add-target")
    assert chrome.js("document.querySelectorAll('#targets li').length") == len(TARGETS)

    # No token yet: the server answers 401 and the page says what to do.
    chrome.click("analyze")
    error = chrome.wait_for("!document.getElementById('error').hidden && document.getElementById('error').textContent")
    assert "رمز" in error and chrome.js("document.getElementById('token-box').open")

    chrome.type_into("token", TOKEN)
    chrome.js("document.getElementById('token').blur()")  # 'change': the page stores it, asks /info again
    assert expected["model"]["version"] in chrome.wait_for("document.getElementById('model').textContent")
    chrome.click("analyze")
    chrome.wait_for("!document.getElementById('result').hidden")
    assert chrome.js("document.getElementById('error').hidden")
    assert chrome.js("sessionStorage.getItem('khabar.token')") == TOKEN

    marks = chrome.js("""Array.from(document.querySelectorAll('#entities-text mark.ent')).map(m => ({
        text: m.textContent, label: m.dataset.label, start: +m.dataset.start, end: +m.dataset.end}))""")
    assert [(m["start"], m["end"], m["label"]) for m in marks] == \
           [(e["start"], e["end"], e["label"]) for e in expected["entities"]]
    for m in marks:
        assert article[m["start"]:m["end"]] == m["text"]
    # The whole article is shown, unchanged, around the highlights.
    assert chrome.js("document.getElementById('entities-text').textContent") == article
    legend = set(chrome.js("Array.from(document.querySelectorAll('#legend span')).map(s => s.dataset.type)"))
    assert {m["label"] for m in marks} <= legend
    assert chrome.js("document.getElementById('topic-label').textContent") == expected["topic"]["label"]
    assert chrome.js("document.querySelectorAll('#topic .bar').length") == len(expected["topic"]["scores"])
    assert chrome.js("document.querySelectorAll('#stance tr.stance-row').length") == len(TARGETS)

    chrome.screenshot(_isolated_home / "reports" / "ui.png")
    assert (_isolated_home / "reports" / "ui.png").stat().st_size > 10_000


ACTOR_ARTICLE = ("رحبت الحكومة العراقية بالاتفاق الأمني. أما الفصائل المسلحة فقد أعلنت أنها ترفض الاتفاق، "
                 "وقالت الفصائل إنه لا يلزمها.")
ACTORS = ["الحكومة العراقية", "الفصائل المسلحة"]


def test_page_shows_each_actors_stance_and_evidence(server, chrome):
    """Actors typed on the page come back under their target, with their stance and the evidence
    sentences highlighted, as the API answers them."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    expected = httpx.post(f"{server.url}/label", json={"text": ACTOR_ARTICLE, "targets": TARGETS[:1], "actors": ACTORS},
                          headers=headers, timeout=120).json()
    want = {a["actor"]: a for a in expected["stance"][0]["actors"]}
    assert set(ACTORS) <= set(want)

    chrome.send("Page.navigate", url=f"{server.url}/ui")
    chrome.wait_for("document.readyState === 'complete' && !!document.getElementById('analyze')")
    chrome.js(f"sessionStorage.setItem('khabar.token', {json.dumps(TOKEN)})")
    chrome.send("Page.reload")
    chrome.wait_for("document.readyState === 'complete' && !!document.getElementById('analyze')")
    chrome.type_into("article", ACTOR_ARTICLE)
    chrome.type_into("target-input", TARGETS[0])
    chrome.click("add-target")
    for actor in ACTORS:
        chrome.type_into("actor-input", actor)
        chrome.click("add-actor")
    chrome.click("analyze")
    chrome.wait_for("!document.getElementById('result').hidden")
    shown = chrome.js("""Array.from(document.querySelectorAll('#stance li.actor')).map(li => ({
        actor: li.dataset.actor, label: li.dataset.label,
        evidence: Array.from(li.querySelectorAll('q.evidence')).map(q => [+q.dataset.start, +q.dataset.end, q.textContent])}))""")
    assert {s["actor"]: s["label"] for s in shown} == {k: v["label"] for k, v in want.items()}
    for s in shown:
        assert s["evidence"], f"{s['actor']}: evidence is shown"
        for start, end, text in s["evidence"]:
            assert ACTOR_ARTICLE[start:end] == text
