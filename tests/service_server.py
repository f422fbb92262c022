"""Start the real service (`bentoml serve`) on a free 127.0.0.1 port for end-to-end tests.

Used by tests/test_service_*.py and tests/test_ui_browser.py through module-scoped fixtures: the
server sees the test session's KHABAR_HOME/BENTOML_HOME (set by conftest's ``_isolated_home``)
and the tiny model's tag; it is stopped, with its workers, when the module ends.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import psutil

from benchmarks.loadtest import is_worker

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_NER = ROOT / "data" / "sample" / "ner.conll"
READY_TIMEOUT_S = float(os.environ.get("KHABAR_TEST_SERVER_TIMEOUT", "180"))


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``bentoml serve khabar.serving.service:Khabar``; ``url`` is its base address."""

    def __init__(self, model_tag: str, log_path: Path, unset: tuple[str, ...] = (), **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, "KHABAR_MODEL": model_tag, "KHABAR_THREADS": os.environ.get("KHABAR_THREADS", "2"),
                    "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", **env}
        for key in unset:  # e.g. to check khabar's own defaults rather than the test's
            full_env.pop(key, None)
        bentoml = Path(sys.executable).parent / "bentoml"
        self._log = open(log_path, "wb")
        # A new session, so that stopping it also stops the worker processes BentoML forks.
        self.proc = subprocess.Popen(
            [str(bentoml), "serve", "khabar.serving.service:Khabar", "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "Server":
        """Block until /readyz answers 200; raise with the server log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the service did not become ready in {timeout:.0f} s; log tail:\n{tail}")

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        try:  # workers that outlived the arbiter
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """BentoML's worker processes of this server (``_bentoml_impl.worker``, started by the
        arbiter that ``bentoml serve`` runs), ordered by PID; a killed worker's replacement too."""
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return sorted((p for p in family if is_worker(p)), key=lambda p: p.pid)


@contextmanager
def running(model_tag: str, log_path: Path, unset: tuple[str, ...] = (), **env: str) -> Iterator[Server]:
    """A ready :class:`Server`, stopped (with its workers) when the block ends, however it ends."""
    srv = Server(model_tag, log_path, unset=unset, **env)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def sample_sentences(n: int) -> list[str]:
    """The n sentences of the project's own NER sample with the most entities.

    The tiny test model was trained on them, so it finds entities there even when it finds none
    in new text: tests of the offset invariant need real entities to check.
    """
    sentences, words, entities = [], [], 0
    for line in SAMPLE_NER.read_text(encoding="utf-8").splitlines() + [""]:
        parts = line.split()
        if parts:
            words.append(parts[0])
            entities += parts[-1].startswith("B-")
        elif words:
            sentences.append((entities, " ".join(words)))
            words, entities = [], 0
    return [text for _, text in sorted(sentences, key=lambda s: -s[0])[:n]]


def decorate(text: str, k: int = 0) -> str:
    """The same sentence as a reader sees it, with what normalization removes or changes: tashkeel,
    tatweel, an invisible direction mark, doubled spaces and an emoji (outside the BMP, so code
    points and UTF-16 units differ). Entities found in it must still index this exact string."""
    out = []
    for i, word in enumerate(text.split(" ")):
        if len(word) > 3 and "\u0621" <= word[1] <= "\u064a" and "\u0621" <= word[2] <= "\u064a":
            if i % 3 == k % 3:
                word = word[:2] + "\u0640\u0640" + word[2:]      # tatweel
            elif i % 3 == (k + 1) % 3:
                word = word[0] + "\u064e" + word[1:]             # fatha
            elif i % 5 == 0:
                word = word + "\u200f"                           # right-to-left mark
        out.append(word)
    return "🗞️ " + "  ".join(out)


def eager_ner_copy(loaded, name: str = "khabar-eager-ner", shift: float = 2.5) -> str:
    """Store a copy of a loaded model whose entity head says "O" less readily; return its tag.

    The tiny test model is trained for seconds and often tags no entity at all; the offset
    invariant needs entities to check. Lowering the "O" logit makes the trained head's next
    choices (B-/I- of assorted types) come out, so most words become parts of entities.
    """
    import copy

    import torch

    from khabar.models.store import save_model

    model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        model.heads["ner"].bias[loaded.schema.tasks["ner"].index("O")] -= shift
    return save_model(model, loaded.tokenizer, training=loaded.training, name=name)
