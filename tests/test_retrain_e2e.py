"""Retraining end to end with a tiny model and a running server (the issue's "what it must show").

A toy base model (separable topic/stance/NER, tests/test_training.py) is promoted and served by a
real `bentoml serve` that follows promotions (KHABAR_MODEL=khabar:promoted, polled every second).
Then, through the `khabar retrain` command:

1. new topic rows: the run is SIGKILLed mid-training (promoted model and store untouched), the same
   command resumes it, the gate passes, the candidate is promoted, and the same server answers
   with the new version while requests keep succeeding during the switch;
2. a promoted model whose weights are broken: the server keeps the live one and reports the error;
3. the training rows again with shuffled labels: the gate refuses (topic macro-F1 collapses on the
   held-out set) and the server keeps answering with the previous version.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from service_server import running
from test_training import toy_config, toy_files


SPORT = "المدرب قال بعد المباراة إن الفريق سجل هدف في الملعب"
POLL_S = "1"


def _khabar(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "KHABAR_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "khabar.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _wait(predicate, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def toy(tiny_backbone, tmp_path_factory):
    """Toy files, and a base model trained on them (held out: another toy draw) and promoted."""
    from khabar.models.registry import promote
    from khabar.training.config import from_dict
    from khabar.training.loop import train

    root = tmp_path_factory.mktemp("retrain_e2e")
    for sub in ("train", "dev", "new"):
        (root / sub).mkdir()
    train_files = toy_files(root / "train", n=48, seed=0)
    dev_files = toy_files(root / "dev", n=32, seed=7)
    raw = toy_config(tiny_backbone, train_files, epochs=4, name="e2e")
    for task in raw["tasks"]:
        raw["tasks"][task]["dev"] = str(dev_files[task])
    base = train(from_dict(raw), log=lambda m: None)
    assert base["dev_metrics"]["topic"]["topic"]["macro_f1"] == 1.0, "the toy base should learn the toy task"
    promote(base["tag"], reason="e2e base")

    rows = [json.loads(line) for line in toy_files(root / "new", n=24, seed=11)["topic"].read_text("utf-8").splitlines()]
    rows = [{**r, "id": f"new-{r['id']}"} for r in rows]
    new_rows = root / "new_topic.jsonl"
    new_rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    # Every topic row the candidate learns from, with its labels shuffled: a shuffle that leaves no
    # signal (half of each class keeps its label), so the refusal does not hang on a lucky draw.
    rows += [json.loads(line) for line in train_files["topic"].read_text("utf-8").splitlines()]
    gold = [r["label"] for r in rows]
    for seed in range(1000):
        labels = gold[:]
        random.Random(seed).shuffle(labels)
        kept = {c: sum(g == lab == c for g, lab in zip(gold, labels)) / gold.count(c) for c in set(gold)}
        if set(kept.values()) == {0.5}:
            break
    else:
        raise AssertionError("no balanced shuffle found")
    shuffled = root / "shuffled_topic.jsonl"
    shuffled.write_text("".join(json.dumps({**r, "label": lab}, ensure_ascii=False) + "\n"
                                for r, lab in zip(rows, labels)), encoding="utf-8")
    return {"base": base["tag"], "new": new_rows, "shuffled": shuffled, "root": root}


@pytest.fixture(scope="module")
def server(toy):
    with running("khabar:promoted", toy["root"] / "server.log", KHABAR_RELOAD_POLL_S=POLL_S) as srv:
        yield srv


def _info(server) -> dict:
    resp = httpx.get(f"{server.url}/info", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _version(server) -> str:
    resp = httpx.post(f"{server.url}/label", json={"text": SPORT, "targets": []}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["topic"]["label"] == "sport"
    return resp.json()["model"]["version"]


class Traffic:
    """Requests in a loop while the model is switched: none may fail."""

    def __init__(self, server) -> None:
        self.url, self.stop, self.answers, self.failures = server.url, threading.Event(), [], []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                try:
                    resp = client.post(f"{self.url}/label", json={"text": SPORT, "targets": ["الفريق"]})
                    if resp.status_code == 200:
                        self.answers.append(resp.json()["model"]["version"])
                    else:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as err:
                    self.failures.append(repr(err))
                time.sleep(0.05)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def test_retrain_promote_and_refuse_while_serving(toy, server):
    from khabar.env import khabar_home
    from khabar.models.registry import promoted_tag, read_stages

    base = toy["base"]
    assert _info(server)["model"]["tag"] == base
    assert _version(server) == base.partition(":")[2]

    # 1. New rows. Killed mid-training first: nothing promoted, the stages file untouched.
    stages_before = read_stages()
    cmd = ["retrain", "--base", base, "--new", str(toy["new"]), "--set", "epochs=3", "--set", "checkpoint_every_steps=2"]
    env = {**os.environ, "KHABAR_THREADS": "1"}
    runs = khabar_home() / "runs"
    before = set(runs.glob("e2e-retrain-*"))
    proc = subprocess.Popen([sys.executable, "-m", "khabar.cli", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_dir = _wait(lambda: next((d for d in set(runs.glob("e2e-retrain-*")) - before if (d / "LATEST").exists()), None),
                    300, "the retraining's first checkpoint", every=0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run_dir / "done.json").exists(), "the run finished before it could be killed"
    assert read_stages() == stages_before and promoted_tag() == base
    assert _info(server)["model"]["tag"] == base

    with Traffic(server) as traffic:
        done = _khabar(*cmd)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "resuming" in done.stderr, "the same command must resume the killed run"
        assert "GATE PASSED" in done.stderr
        candidate, status, gate_file = done.stdout.split()
        assert status == "promoted" and promoted_tag() == candidate != base
        _wait(lambda: _info(server)["model"]["tag"] == candidate, 60, "the server to switch to the candidate")
        time.sleep(0.5)
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.answers[0] == base.partition(":")[2] and traffic.answers[-1] == candidate.partition(":")[2]
    assert _version(server) == candidate.partition(":")[2]
    gate = json.loads(Path(gate_file).read_text(encoding="utf-8"))
    assert gate["passed"] and gate["base"] == base and gate["merge"]["topic"]["new_rows_kept"] == 24
    report = Path(gate_file).parent
    assert (report / "report.html").exists() and json.loads((report / "metrics.json").read_text())["compare"]
    assert read_stages()["gates"][candidate]["passed"] is True
    info = _info(server)
    assert info["reload"]["live"] == candidate and info["reload"]["last_reload"]["to"] == candidate

    # 2. A promoted model that cannot be loaded: the live one stays, /info says why.
    broken = _broken_copy(candidate)
    from khabar.models.registry import promote

    promote(broken, reason="e2e: broken weights")
    err = _wait(lambda: (_info(server)["reload"]["last_error"] or {}).get("tag") == broken and _info(server),
                60, "the server to report the failed load")
    assert err["model"]["tag"] == candidate and _version(server) == candidate.partition(":")[2]
    promote(candidate, reason="e2e: back from the broken model")
    reloaded = httpx.post(f"{server.url}/admin/reload", timeout=60).json()
    assert reloaded["live"] == candidate and reloaded["changed"] is False

    # 3. Shuffled labels: the gate refuses; the server keeps the candidate.
    refused = _khabar("retrain", "--base", candidate, "--new", str(toy["shuffled"]), "--set", "epochs=3",
                      "--tolerance", "5")
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert "GATE REFUSED" in refused.stderr and "topic macro_f1" in refused.stderr
    worse, status, gate_file = refused.stdout.split()
    assert status == "refused" and promoted_tag() == candidate
    gate = json.loads(Path(gate_file).read_text(encoding="utf-8"))
    topic = next(c for c in gate["checks"] if c["task"] == "topic")
    assert not gate["passed"] and not topic["passed"] and topic["delta"] < -0.05, topic
    assert gate["merge"]["topic"]["conflicts"] > 0, "shuffled labels on the same texts are conflicts"
    assert read_stages()["gates"][worse]["passed"] is False
    time.sleep(3 * float(POLL_S))
    assert _info(server)["model"]["tag"] == candidate and _version(server) == candidate.partition(":")[2]
    listed = _khabar("models", "list", timeout=120).stdout
    assert f"{worse}" in listed and "refused" in listed


def _broken_copy(tag: str) -> str:
    """A stored copy of ``tag`` whose weights file is garbage (it passes promote's check)."""
    import shutil

    import bentoml
    from khabar.models.store import model_path

    _, src = model_path(tag)
    with bentoml.models.create("khabar", labels={"stage": "test"}) as ref:
        for item in src.iterdir():
            if item.name != "model.yaml":
                dst = Path(ref.path) / item.name
                shutil.copytree(item, dst) if item.is_dir() else shutil.copy2(item, dst)
        (Path(ref.path) / "model.safetensors").write_bytes(b"not a safetensors file")
        return str(ref.tag)


def test_admin_reload_rule_without_a_token():
    from khabar.serving.reload import reload_allowed

    assert reload_allowed("127.0.0.1", token_configured=False)
    assert reload_allowed("::1", token_configured=False)
    assert not reload_allowed("10.0.0.7", token_configured=False)
    assert not reload_allowed(None, token_configured=False)
    assert reload_allowed("10.0.0.7", token_configured=True), "with a token the guard has checked it"
