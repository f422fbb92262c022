"""No network traffic leaves the machine by default: the real service and a batch job, with every
telemetry switch of the environment removed, never resolve or connect to a non-local host.

Every Python process of the tree (the BentoML arbiter, its workers, `khabar score`) gets an audit
hook through a ``sitecustomize`` on PYTHONPATH; it logs each ``socket.getaddrinfo`` and
``socket.connect`` to a host other than this machine. Name lookups happen before any packet is
sent, so a usage ping (BentoML's tracking, the Hugging Face hub, Ray's usage stats) shows up
even on a machine without internet. A positive control proves the hook records what it should.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service_server import running

TELEMETRY_VARS = ("BENTOML_DO_NOT_TRACK", "ORT_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED",
                  "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

SITECUSTOMIZE = r'''
import json, os, sys

_LOG = os.environ.get("KHABAR_NET_AUDIT")
_LOCAL = {"", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "ip6-localhost"}


def _local(host):
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None:
        return True
    host = str(host)
    if host in _LOCAL or host.startswith("127."):
        return True
    try:
        import socket
        return host == socket.gethostname()
    except Exception:
        return False


def _hook(event, args):
    if not _LOG:
        return
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect":
        if not isinstance(args[1], tuple):
            return  # a unix socket (BentoML's arbiter talks to its workers through them)
        host = args[1][0]
    else:
        return
    if _local(host):
        return
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "event": event, "host": str(host), "argv": sys.argv[:3]}) + "\n")


sys.addaudithook(_hook)
'''


def audited_env(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose Python processes log non-local lookups to the returned file."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "net.jsonl"
    log.touch()
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env["KHABAR_NET_AUDIT"] = str(log)
    return env, log


def attempts(log: Path) -> list[dict]:
    """The non-local lookups and connections recorded so far."""
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_audit_hook_records_a_lookup_of_a_remote_host(tmp_path):
    env, log = audited_env(tmp_path)
    code = "import socket\ntry:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert [a["host"] for a in attempts(log)] == ["huggingface.co"]


def test_service_and_batch_job_make_no_remote_connection_by_default(tiny_model_tag, tmp_path):
    env, log = audited_env(tmp_path)
    with running(tiny_model_tag, tmp_path / "server.log", unset=TELEMETRY_VARS,
                 PYTHONPATH=env["PYTHONPATH"], KHABAR_NET_AUDIT=env["KHABAR_NET_AUDIT"]) as server:
        body = {"text": "وقعت الحكومة العراقية اتفاقا مع الولايات المتحدة في بغداد", "targets": ["الاتفاق"]}
        for _ in range(3):
            assert httpx.post(f"{server.url}/label", json=body, timeout=60).status_code == 200
        for path in ("/info", "/metrics", "/ui", "/docs.json"):
            assert httpx.get(f"{server.url}{path}", timeout=30, follow_redirects=True).status_code == 200
        time.sleep(3)  # leave time for anything sent in the background after requests

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": 1, "text": body["text"]}, ensure_ascii=False) + "\n", encoding="utf-8")
    score = subprocess.run([sys.executable, "-m", "khabar.cli", "score", str(inp), "--output", str(out),
                            "--model", tiny_model_tag, "--quiet"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert score.returncode == 0, score.stderr[-2000:]

    seen = attempts(log)
    assert seen == [], f"non-local network use (host {socket.gethostname()}): {seen[:5]}"
