"""The out-of-process rows of the bench: the running service over HTTP, and the batch job.

Each starts the real command (``khabar serve``, ``khabar score``) as a child process in its own
process group, watches the peak RSS of every process in that tree, and stops it at the end. A row
that cannot run (the command is missing, the service never gets ready) comes back as
``{"skipped": reason}`` so the rest of the bench still runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.bench_rows import peak_rss_mb, read_articles, summarize


def khabar_command() -> str | None:
    """The ``khabar`` console script of this environment."""
    return shutil.which("khabar", path=str(Path(sys.executable).parent)) or shutil.which("khabar")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TreeWatch:
    """Samples the peak RSS of a process and all its descendants until stopped.

    Per process it keeps the kernel's own high-water mark (VmHWM), read while the process lives.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds (user + system) per process, last seen
        self.tree_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.sample(psutil)
            self._stop.wait(self.interval)

    def sample(self, psutil=None) -> None:
        """Read every live process of the tree once."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        total = 0.0
        for p in procs:
            try:
                rss = p.memory_info().rss / 2**20
                # read every time: a child seen between fork and exec still shows its parent's command
                self.names[p.pid] = " ".join(p.cmdline()[:4])
                times = p.cpu_times()
                self.cpu[p.pid] = times.user + times.system
            except psutil.Error:
                continue
            hwm = peak_rss_mb(p.pid) or rss
            self.peaks[p.pid] = max(self.peaks.get(p.pid, 0.0), hwm, rss)
            total += rss
        self.tree_peak = max(self.tree_peak, total)

    def stop(self) -> None:
        """Take a last sample and stop sampling."""
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the tree seen (live or since exited)."""
        return sum(self.cpu.values())

    def peak_of(self, pattern: str) -> float | None:
        """Largest peak among processes whose command line contains ``pattern``."""
        found = [mb for pid, mb in self.peaks.items() if pattern in self.names.get(pid, "")]
        return max(found) if found else None


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def row_service(spec: dict, work: Path, log=print) -> dict:
    """``khabar serve`` on a free port; ``clients`` threads POST /label, one article each time."""
    import httpx

    cmd = khabar_command()
    if cmd is None:
        return {"skipped": "the khabar command is not installed in this environment"}
    port = free_port()
    env = {**os.environ, "KHABAR_MODEL": spec["tag"], "KHABAR_ENGINE": spec.get("engine", "int8"),
           "KHABAR_THREADS": str(spec["threads"])}
    logfile = work / "service.log"
    base = f"http://127.0.0.1:{port}"
    with open(logfile, "w") as out:
        proc = subprocess.Popen([cmd, "serve", "--model", spec["tag"], "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    watch = TreeWatch(proc.pid)
    try:
        ready = _wait_ready(proc, base, float(spec.get("ready_timeout_s", 300)))
        if ready is not None:
            return {"skipped": f"{ready} ({_tail(logfile)})"}
        articles = read_articles(Path(spec["articles"]))
        info = _get_json(f"{base}/info")
        body = lambda a: {"text": a["text"], "targets": [spec["target"]]}  # noqa: E731
        with httpx.Client(timeout=float(spec.get("request_timeout_s", 600)),
                          limits=httpx.Limits(max_connections=64)) as client:
            for a in articles[: spec.get("warmup", 2)]:
                r = client.post(f"{base}/label", json=body(a))
                if r.status_code != 200:
                    return {"skipped": f"POST /label answered {r.status_code}: {r.text[:200]}"}

            def call(a: dict) -> tuple[dict, float]:
                t0 = time.perf_counter()
                r = client.post(f"{base}/label", json=body(a))
                r.raise_for_status()
                return r.json(), (time.perf_counter() - t0) * 1000

            log(f"  service: {len(articles)} articles, {spec['clients']} concurrent clients")
            watch.sample()
            cpu0, start = watch.cpu_seconds(), time.perf_counter()
            with ThreadPoolExecutor(max_workers=int(spec["clients"])) as pool:
                results = list(pool.map(call, articles))
            seconds = time.perf_counter() - start
        watch.sample()
        return {"seconds": seconds, "cpu_seconds": watch.cpu_seconds() - cpu0,
                "latencies_ms": [ms for _, ms in results],
                "labels": [summarize(res) for res, _ in results],
                "peak_rss_mb": watch.peak_of("_bentoml_impl.worker"), "tree_peak_rss_mb": watch.tree_peak,
                "engine": (info or {}).get("engine") or (info or {}).get("model", {}).get("engine"),
                "clients": int(spec["clients"])}
    except Exception as err:  # noqa: BLE001 - one row failing must not lose the others
        return {"skipped": f"{type(err).__name__}: {err} ({_tail(logfile)})"}
    finally:
        watch.stop()
        stop_group(proc)


def _wait_ready(proc: subprocess.Popen, base: str, timeout: float) -> str | None:
    """None once GET /readyz answers 200; else why not."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"khabar serve exited with code {proc.returncode}"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"the service was not ready after {timeout:.0f} s"


def _get_json(url: str) -> dict | None:
    import httpx

    try:
        r = httpx.get(url, timeout=10)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def row_batch(spec: dict, work: Path, log=print) -> dict:
    """``khabar score`` (local engine) over the articles; the rate is the job's own (scoring only)."""
    cmd = khabar_command()
    if cmd is None:
        return {"skipped": "the khabar command is not installed in this environment"}
    job = work / f"batch-{os.getpid()}-{int(time.time())}"
    job.mkdir(parents=True)
    src, dst = job / "articles.jsonl", job / "labels.jsonl"
    articles = read_articles(Path(spec["articles"]))
    with open(src, "w", encoding="utf-8") as fh:
        for a in articles:
            fh.write(json.dumps({"id": a["id"], "text": a["text"]}, ensure_ascii=False) + "\n")
    env = {**os.environ, "KHABAR_ENGINE": spec.get("engine", "int8"), "KHABAR_THREADS": str(spec["threads"])}
    logfile = job / "score.log"
    args = [cmd, "score", str(src), "--output", str(dst), "--model", spec["tag"], "--target", spec["target"],
            "--engine", "local", "--batch-size", str(spec.get("chunk", 32)), "--quiet"]
    log(f"  batch: khabar score on {len(articles)} articles")
    try:
        with open(logfile, "w") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            watch = TreeWatch(proc.pid)
            try:
                proc.wait(timeout=float(spec.get("timeout_s", 3600)))
            except subprocess.TimeoutExpired:
                stop_group(proc)
                return {"skipped": f"khabar score did not finish in {spec.get('timeout_s', 3600)} s"}
            finally:
                watch.stop()
            wall = time.perf_counter() - t0
        text = logfile.read_text(errors="replace")
        if proc.returncode != 0:
            return {"skipped": f"khabar score exited with code {proc.returncode} ({_tail(logfile)})"}
        rate = re.search(r"([\d.]+) rows/s while scoring", text)
        from khabar.serving.batch.io import read_output

        by_id = {row["id"]: row for row in read_output(dst)}
        missing = [a["id"] for a in articles if a["id"] not in by_id]
        if missing:
            return {"skipped": f"khabar score left out {len(missing)} article(s) ({_tail(logfile)})"}
        seconds = len(articles) / float(rate.group(1)) if rate and float(rate.group(1)) > 0 else wall
        return {"seconds": seconds, "wall_s": wall, "latencies_ms": [],
                "labels": [summarize(by_id[a["id"]]) for a in articles],
                "peak_rss_mb": max(watch.peaks.values()) if watch.peaks else None}
    finally:
        shutil.rmtree(job, ignore_errors=True)
