"""A bounded load test of a running khabar service on this machine.

``python -m benchmarks.loadtest --url http://127.0.0.1:3000 --clients 32 --seconds 60``

N clients send ``/label`` requests back to back (Arabic articles written for this test, half with
stance targets) for a warm-up, then for T measured seconds. It reports requests, failures by
status, latency percentiles of the answered requests, the documented load shedding (429/503 that
carry ``Retry-After``) apart from failures, and the worker's resident memory after the warm-up and
at the end. It only talks to 127.0.0.1 / localhost: it is a test, not a tool to load others.
Results print as a table and go to ``KHABAR_HOME/reports/loadtest.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SHED_STATUSES = frozenset({429, 503})
ARTICLES = [
    "أعلن البنك المركزي في الرباط رفع سعر الفائدة لمواجهة ارتفاع الأسعار خلال العام المقبل.",
    "استقبل الرئيس في القاهرة وفدا من جامعة الدول العربية لبحث الأزمة في السودان.",
    "فاز نادي الهلال على النصر في الرياض بهدفين وقال المدرب إن الفريق قدم مباراة كبيرة.",
    "قررت الحكومة في تونس دعم أسعار الخبز والحليب للأسر محدودة الدخل بدءا من الشهر المقبل.",
    "أعلنت وزارة الطاقة الجزائرية اكتشاف حقل غاز جديد في الجنوب بطاقة إنتاج كبيرة.",
    "رحب صندوق النقد الدولي بالإصلاحات الاقتصادية ودعا إلى خطوات أوسع في المنطقة.",
    "افتتح وزير الثقافة في عمان معرض الكتاب الدولي بمشاركة مئات من دور النشر العربية.",
    "حذرت منظمة الصحة العالمية من انتشار الكوليرا في عدة محافظات بعد الفيضانات الأخيرة.",
]
TARGETS = ["رفع سعر الفائدة", "الحل السياسي للأزمة"]


class LoadTestError(RuntimeError):
    """A load test that cannot run as asked (a remote URL, no server, no worker process)."""


def check_local(url: str) -> str:
    """The URL without a trailing slash; raise LoadTestError unless it points at this machine."""
    host = urlparse(url).hostname
    if urlparse(url).scheme != "http" or host not in LOCAL_HOSTS:
        raise LoadTestError(f"refusing to load {url!r}: the load test only targets http://127.0.0.1:PORT "
                            "(a server on this machine)")
    return url.rstrip("/")


def find_workers(port: int) -> list:
    """The processes serving ``port`` on 127.0.0.1: BentoML's worker processes when there are
    (``_bentoml_impl.worker``, children of the arbiter that owns the socket), else the listener."""
    import psutil

    listeners = {c.pid for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    procs: list = []
    for pid in sorted(listeners):
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        procs += [p for p in family if is_worker(p)]
    if not procs:
        procs = [psutil.Process(pid) for pid in sorted(listeners)]
    unique = {p.pid: p for p in procs}
    return [unique[pid] for pid in sorted(unique)]


def is_worker(proc) -> bool:
    """Whether ``proc`` is one of BentoML's worker processes (its command line runs
    ``_bentoml_impl.worker``); False for a process gone or not ours to read."""
    import psutil

    try:
        return any("_bentoml_impl.worker" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def rss_mb(procs: list) -> float | None:
    """Resident memory of the processes together (MB); None when none is alive."""
    import psutil

    total, alive = 0, False
    for proc in procs:
        try:
            total += proc.memory_info().rss
            alive = True
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20, 1) if alive else None


@dataclass
class Tally:
    """What the clients saw during one phase."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    shed: Counter = field(default_factory=Counter)       # 429/503 with Retry-After (documented)
    failures: Counter = field(default_factory=Counter)   # anything else that is not a 200
    requests: int = 0


async def _client(ac, k: int, stop_at: float, tally: Tally, max_requests: int) -> None:
    i = 0
    while time.monotonic() < stop_at and tally.requests < max_requests:
        text = ARTICLES[(k + i) % len(ARTICLES)]
        body = {"text": f"{text} ({k}-{i})", "targets": TARGETS if (k + i) % 2 else []}
        i += 1
        tally.requests += 1
        t0 = time.perf_counter()
        try:
            resp = await ac.post("/label", json=body)
        except Exception as err:  # noqa: BLE001 - a client-side failure is a result to count
            tally.failures[type(err).__name__] += 1
            continue
        ms = (time.perf_counter() - t0) * 1000
        tally.statuses[resp.status_code] += 1
        if resp.status_code == 200:
            tally.latencies_ms.append(ms)
        elif resp.status_code in SHED_STATUSES and resp.headers.get("retry-after"):
            tally.shed[str(resp.status_code)] += 1
            await asyncio.sleep(min(float(resp.headers["retry-after"]), 5.0))  # as a good client does
        else:
            tally.failures[str(resp.status_code)] += 1


async def _phase(url: str, clients: int, seconds: float, timeout: float, max_requests: int) -> Tally:
    import httpx

    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as ac:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_client(ac, k, stop_at, tally, max_requests) for k in range(clients)))
    return tally


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) of values, nearest rank (a latency some request had); None when empty."""
    import numpy as np

    if not values:
        return None
    return round(float(np.percentile(values, q, method="inverted_cdf")), 1)


def wait_ready(url: str, timeout: float) -> None:
    """Poll ``/readyz`` until it answers 200; raise LoadTestError after ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise LoadTestError(f"{url}/readyz did not answer 200 within {timeout:.0f} s: start the server "
                                "first (make serve)")
        time.sleep(0.5)


def run(url: str, clients: int = 32, seconds: float = 60, warmup: float = 5, pid: int | None = None,
        timeout: float = 120, max_requests: int = 1_000_000, wait: float = 0) -> dict:
    """Run the warm-up and the measured phase; return the figures (see the module docstring)."""
    import psutil

    url = check_local(url)
    if wait:
        wait_ready(url, wait)
    port = urlparse(url).port or 80
    workers = [psutil.Process(pid)] if pid else find_workers(port)
    if not workers:
        raise LoadTestError(f"no process listens on port {port}: pass --pid of the worker")
    if warmup > 0:
        asyncio.run(_phase(url, clients, warmup, timeout, max_requests))
    rss_warm = rss_mb(workers)
    started = time.monotonic()
    tally = asyncio.run(_phase(url, clients, seconds, timeout, max_requests))
    elapsed = time.monotonic() - started
    rss_end = rss_mb(workers)
    lat = tally.latencies_ms
    growth = (round(100 * (rss_end - rss_warm) / rss_warm, 1) if rss_warm and rss_end is not None else None)
    return {
        "url": url, "clients": clients, "seconds": seconds, "warmup_s": warmup,
        "elapsed_s": round(elapsed, 1), "requests": tally.requests, "ok": tally.statuses.get(200, 0),
        "throughput_rps": round(tally.statuses.get(200, 0) / elapsed, 1) if elapsed else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "shed_with_retry_after": dict(tally.shed), "failures": dict(tally.failures),
        "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
                       "max": round(max(lat), 1) if lat else None},
        "worker_pids": [p.pid for p in workers],
        "rss_mb": {"after_warmup": rss_warm, "end": rss_end, "growth_pct": growth},
    }


def table(result: dict) -> str:
    """The figures as a Markdown table."""
    lat, rss = result["latency_ms"], result["rss_mb"]
    rows = [
        ("clients x seconds", f"{result['clients']} x {result['seconds']:g} (warm-up {result['warmup_s']:g} s)"),
        ("requests", result["requests"]), ("answered 200", result["ok"]),
        ("throughput (req/s)", result["throughput_rps"]),
        ("shed: 429/503 with Retry-After", result["shed_with_retry_after"] or 0),
        ("failures", result["failures"] or 0),
        ("latency p50 / p95 / p99 / max (ms)", f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}"),
        ("worker RSS after warm-up / end (MB)", f"{rss['after_warmup']} / {rss['end']} ({rss['growth_pct']:+}%)"
         if rss["growth_pct"] is not None else f"{rss['after_warmup']} / {rss['end']}"),
    ]
    return "\n".join(["| measure | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the table, write the JSON report; exit 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the service (127.0.0.1 only)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="measured duration")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many per phase")
    parser.add_argument("--pid", type=int, default=None, help="worker PID to measure (default: found by port)")
    parser.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for /readyz")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default KHABAR_HOME/reports/loadtest.json)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds above 0")
    try:
        result = run(args.url, args.clients, args.seconds, args.warmup, args.pid, max_requests=args.max_requests,
                     wait=args.wait)
    except LoadTestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from khabar.env import reports_dir

    out = args.out or reports_dir() / "loadtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nwritten to {out}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
