"""The bench: speed, memory and agreement of khabar against plain Hugging Face pipelines.

``python -m benchmarks.bench --data-dir ../shared/data [--model TAG] ...`` (``make bench``), from
the checkout. Without ``--model`` it benches the model the service would serve (the promoted one,
else the newest).

In one sitting and one process tree, on ``n`` whole articles of ``topic/ant21/dev.jsonl`` (title
and body, a fixed seeded sample) with one stance target each (:data:`TARGET`, the same claim for
every article, because the batch job takes one target list for a whole file):

1. baseline: the model's three heads exported as plain pipelines (:mod:`benchmarks.pipeline_export`),
   fp32, one article at a time;
2. khabar's predictor in-process: fp32, ``onnx-int8`` and ``torch-int8``;
3. the service (``khabar serve``) over HTTP with ``clients`` concurrent clients;
4. the batch job (``khabar score``, local engine);
5. training examples/s: khabar's loop against ``transformers.Trainer`` (:mod:`benchmarks.bench_train`);
6. int8 against fp32 on dev sets (stance macro-F1, NER micro-F1).

Each in-process row runs in a fresh child process (:mod:`benchmarks.bench_rows`) so that its
peak RSS is its own. Writes ``bench.json`` and ``bench.md`` (default: KHABAR_HOME/reports).
"""
from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from benchmarks import REPO_ROOT, SAMPLE_DIR

# The stance target of every article: a claim written for the bench ("The government announces
# new measures to support the national economy"), so that the batch job's one target applies too.
TARGET = "الحكومة تعلن إجراءات جديدة لدعم الاقتصاد الوطني"
TOPIC_FILE = Path("topic") / "ant21" / "dev.jsonl"
NER_TRAIN = Path("ner") / "anercorp" / "train.conll"
DEV_SETS = [("stance", "ans", Path("stance/ans/dev.jsonl")), ("stance", "baly2018", Path("stance/baly2018/dev.jsonl")),
            ("ner", "anercorp", Path("ner/anercorp/dev.conll"))]
TARGETS = {"predictor_int8": 4.0, "service": 3.0, "service_rss_mb": 1536.0, "training": 1.3}
ROW_KEYS = ("baseline", "fp32", "onnx-int8", "torch-int8", "onnx-int8-streams", "service", "batch", "training",
            "dev", "actors")


class BenchError(RuntimeError):
    """The bench cannot start (missing data, model); the message says what to do."""


@dataclass
class BenchOptions:
    """What the bench runs; see :func:`bench_command` for each option."""

    data_dir: Path
    model: str | None = None  # None: the promoted model, else the newest (what the service serves)
    n: int = 200
    threads: int | None = None
    clients: int = 8
    chunk: int = 32
    train_steps: int = 30
    train_batch: int = 16
    dev_limit: int = 300
    skip: tuple[str, ...] = ()
    out_dir: Path | None = None
    row_timeout_s: int = 3600
    seed: int = 0
    extra: dict = field(default_factory=dict)


def load_articles(data_dir: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` articles (a seeded sample) from ``data_dir/topic/ant21/dev.jsonl``, title + body."""
    path = Path(data_dir) / TOPIC_FILE
    if not path.exists():
        raise BenchError(f"{path} not found: pass --data-dir pointing at the shared data folder")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                title = (r.get("title") or "").strip()
                rows.append({"id": str(r["id"]), "label": r.get("label"),
                             "text": f"{title}\n{r['text']}" if title else r["text"]})
    if len(rows) < n:
        raise BenchError(f"{path} holds {len(rows)} articles; --n {n} asks for more")
    return random.Random(seed).sample(rows, n)


def run_child(row: str, spec: dict, work: Path, *, env: dict | None = None, timeout: int = 3600) -> dict:
    """Run one in-process row in a fresh interpreter; its result, or ``{"skipped": why}``."""
    spec_path, out_path = work / f"{row}.spec.json", work / f"{row}.out.json"
    spec_path.write_text(json.dumps(spec, ensure_ascii=False, default=str), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    logfile = work / f"{row}.log"
    with open(logfile, "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_rows", row, str(spec_path), str(out_path)],
                                  env=child_env(env), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"skipped": f"did not finish in {timeout} s"}
    if proc.returncode != 0 or not out_path.exists():
        tail = " | ".join(logfile.read_text(errors="replace").strip().splitlines()[-3:])
        return {"skipped": f"exited with code {proc.returncode}: {tail}"}
    return json.loads(out_path.read_text(encoding="utf-8"))


def child_env(extra: dict | None = None) -> dict:
    """This process's environment plus ``extra``, with the checkout on PYTHONPATH: the child runs
    ``-m benchmarks.bench_rows``, which is importable only from the checkout, whatever the cwd."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **(extra or {}), "PYTHONPATH": path}


def agreement(labels: list[dict], reference: list[dict]) -> dict:
    """Share of same topic and stance labels, and entity F1 (exact span and type) against ``reference``."""
    n = len(reference)
    topic = sum(a["topic"] == b["topic"] for a, b in zip(labels, reference)) / n
    stance = sum(a["stance"] == b["stance"] for a, b in zip(labels, reference)) / n
    got = {(i, *map(str, e)) for i, a in enumerate(labels) for e in a["entities"]}
    ref = {(i, *map(str, e)) for i, b in enumerate(reference) for e in b["entities"]}
    f1 = 1.0 if not got and not ref else 2 * len(got & ref) / (len(got) + len(ref))
    return {"topic": topic, "stance": stance, "entities_f1": f1}


def topic_accuracy(labels: list[dict], articles: list[dict]) -> float | None:
    """Accuracy of topic labels against the articles' gold labels (None without gold)."""
    gold = [a.get("label") for a in articles]
    if not all(gold):
        return None
    return sum(l["topic"] == g for l, g in zip(labels, gold)) / len(gold)


def make_row(key: str, name: str, result: dict, n: int, articles: list[dict], reference: list[dict] | None,
             base_rate: float | None) -> dict:
    """One table row from a row's raw result."""
    row = {"key": key, "name": name}
    if "skipped" in result:
        return {**row, "status": f"skipped: {result['skipped']}"}
    rate = n / result["seconds"]
    lat = result.get("latencies_ms") or []
    row.update(status="ok", articles_per_s=rate,
               p50_ms=float(np.percentile(lat, 50)) if lat else None,
               p95_ms=float(np.percentile(lat, 95)) if lat else None,
               peak_rss_mb=result.get("peak_rss_mb"),
               ratio=rate / base_rate if base_rate else None,
               topic_accuracy=topic_accuracy(result["labels"], articles))
    if reference is not None:
        row["agreement"] = agreement(result["labels"], reference)
    if result.get("cpu_seconds") is not None:
        row["cpu_ms_per_article"] = 1000 * result["cpu_seconds"] / n
    hybrid = (result.get("work") or {}).get("hybrid_seconds")
    if hybrid:  # the hybrid heads' cost, as a share of the row's wall time
        row["hybrid_share"] = hybrid / result["seconds"]
    for extra in ("engine", "clients", "tree_peak_rss_mb", "wall_s", "work", "load_avg"):
        if result.get(extra) is not None:
            row[extra] = result[extra]
    return row


def run_bench(opts: BenchOptions, log=print) -> dict:
    """Run every row not in ``opts.skip``; write and return the report."""
    from benchmarks.bench_procs import row_batch, row_service
    from khabar.env import khabar_home, reports_dir
    from khabar.models.engines import engine_threads, resolve_engine_name
    from khabar.models.registry import serving_tag
    from khabar.models.store import model_path

    tag, _ = model_path(serving_tag(opts.model))
    articles = load_articles(opts.data_dir, opts.n, opts.seed)
    threads = engine_threads(opts.threads)
    work = khabar_home() / "cache" / "bench" / tag.replace(":", "-")
    work.mkdir(parents=True, exist_ok=True)
    art_path = work / "articles.jsonl"
    art_path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8")
    int8 = resolve_engine_name("int8")
    common = {"tag": tag, "articles": str(art_path), "target": TARGET, "threads": threads, "chunk": opts.chunk,
              "hf_dir": str(work / "hf"), "clients": opts.clients, "engine": int8}
    run = lambda row, spec, **kw: run_child(row, {**common, **spec}, work, timeout=opts.row_timeout_s, **kw)  # noqa: E731

    log(f"bench: {tag}, {len(articles)} articles, {threads} threads; preparing the pipeline folders and the ONNX cache")
    prep = run("prepare", {"onnx": "onnx-int8" not in opts.skip or int8 == "onnx-int8"})
    if "skipped" in prep:
        raise BenchError(f"cannot prepare the bench: {prep['skipped']}")
    stride = prep["schema"]["stride"]
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    raw: dict[str, dict] = {}
    plan = [
        ("baseline", "baseline: 3 HF pipelines, fp32, 1 article at a time", lambda: run("baseline", {"stride": stride})),
        ("fp32", "khabar predictor, fp32", lambda: run("predictor", {"engine": "fp32"})),
        ("onnx-int8", "khabar predictor, int8 (ONNX Runtime)", lambda: run("predictor", {"engine": "onnx-int8"})),
        ("torch-int8", "khabar predictor, int8 (PyTorch dynamic)", lambda: run("predictor", {"engine": "torch-int8"})),
        ("onnx-int8-streams", f"khabar predictor, int8 (ONNX Runtime), {threads} batches at once, 1 thread each",
         lambda: run("predictor", {"engine": "onnx-int8", "streams": threads})),
        ("service", f"service over HTTP, {opts.clients} clients", lambda: row_service(common, work, log)),
        ("batch", "batch job (khabar score, local)", lambda: row_batch(common, work, log)),
    ]
    for key, name, fn in plan:
        if key in opts.skip:
            raw[key] = {"skipped": "--skip"}
            continue
        log(f"row {key}: {name}")
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        raw[key] = fn()
        raw[key]["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        log(f"  done in {time.perf_counter() - t0:.0f} s" + (f" ({raw[key]['skipped']})" if "skipped" in raw[key] else ""))
    reference = raw["baseline"].get("labels") if "skipped" not in raw["baseline"] else None
    base_rate = opts.n / raw["baseline"]["seconds"] if reference is not None else None
    rows = [make_row(key, name, raw[key], opts.n, articles, reference if key != "baseline" else None, base_rate)
            for key, name, _ in plan]
    if reference is not None and "skipped" not in raw["fp32"]:
        for row in rows:
            if row["key"] in ("onnx-int8", "torch-int8", "onnx-int8-streams") and row["status"] == "ok":
                row["agreement_with_fp32"] = agreement(raw[row["key"]]["labels"], raw["fp32"]["labels"])

    training = _training(opts, prep, threads, work, log)
    dev = _dev(opts, common, run, log)
    report = _report(opts, tag, prep, articles, threads, started, rows, training, dev, int8)
    report["actors"] = _actors(opts, common, run, log)
    out_dir = Path(opts.out_dir) if opts.out_dir else reports_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    from benchmarks.bench_report import markdown

    (out_dir / "bench.md").write_text(markdown(report), encoding="utf-8")
    report["paths"] = {"json": str(out_dir / "bench.json"), "md": str(out_dir / "bench.md")}
    return report


def _training(opts: BenchOptions, prep: dict, threads: int, work: Path, log) -> dict:
    if "training" in opts.skip:
        return {"status": "skipped: --skip"}
    ner = Path(opts.data_dir) / NER_TRAIN
    if not ner.exists():
        ner = SAMPLE_DIR / "ner.conll"  # the checkout's own sample (benchmarks run from the checkout)
    backbone = prep["backbone"].get("resolved") or prep["backbone"].get("name")
    if not backbone or not Path(backbone).exists():
        from khabar.models.backbones import resolve_backbone

        backbone = resolve_backbone(prep["backbone"].get("name", ""))
    log(f"row training: khabar loop vs transformers.Trainer, {opts.train_steps} steps of {opts.train_batch} on {ner.name}")
    with tempfile.TemporaryDirectory(prefix="khabar-bench-train-") as scratch:
        env = {"KHABAR_HOME": scratch, "BENTOML_HOME": str(Path(scratch) / "bentoml"), "HF_HOME": str(Path(scratch) / "hf")}
        spec = {"ner_train": str(ner), "backbone": str(backbone), "steps": opts.train_steps,
                "batch_size": opts.train_batch, "max_length": prep["schema"]["max_length"],
                "stride": prep["schema"]["stride"], "threads": threads}
        result = run_child("training", spec, work, env=env, timeout=opts.row_timeout_s)
    if "skipped" in result:
        return {"status": f"skipped: {result['skipped']}"}
    return {"status": "ok", "data": str(ner), "backbone": str(backbone), **result}


def _dev(opts: BenchOptions, common: dict, run, log) -> dict:
    if "dev" in opts.skip:
        return {"status": "skipped: --skip"}
    sets = [(task, name, str(Path(opts.data_dir) / rel)) for task, name, rel in DEV_SETS
            if (Path(opts.data_dir) / rel).exists()]
    if not sets:
        return {"status": "skipped: no stance or NER dev files under --data-dir"}
    log(f"row dev: int8 against fp32 on {', '.join(n for _, n, _ in sets)} (up to {opts.dev_limit} examples each)")
    result = run("dev", {"sets": sets, "limit": opts.dev_limit})
    if "skipped" in result:
        return {"status": f"skipped: {result['skipped']}"}
    return {"status": "ok", **result}


def _actors(opts: BenchOptions, common: dict, run, log) -> dict:
    if "actors" in opts.skip:
        return {"status": "skipped: --skip"}
    log("row actors: /label latency of 600-word articles, 1 target, with and without 4 actors")
    result = run("actors", {"engine": common["engine"], "words": 600, "n_actors": 20})
    return {"status": f"skipped: {result['skipped']}"} if "skipped" in result else {"status": "ok", **result}


def _report(opts, tag, prep, articles, threads, started, rows, training, dev, int8) -> dict:
    by_key = {r["key"]: r for r in rows}
    ratio = lambda key: by_key[key].get("ratio") if key in by_key else None  # noqa: E731
    ratios = {"predictor_int8": ratio(int8), "predictor_fp32": ratio("fp32"),
              "predictor_onnx_int8": ratio("onnx-int8"), "predictor_torch_int8": ratio("torch-int8"),
              "predictor_onnx_int8_streams": ratio("onnx-int8-streams"),
              "service": ratio("service"), "batch": ratio("batch"),
              "training": training.get("ratio") if training.get("status") == "ok" else None}
    peaks = {k: by_key[k].get("peak_rss_mb") for k in ("baseline", "fp32", "onnx-int8", "torch-int8",
                                                       "onnx-int8-streams", "service", "batch")
             if k in by_key}
    met = {"predictor_int8": _ge(ratios["predictor_int8"], TARGETS["predictor_int8"]),
           "service": _ge(ratios["service"], TARGETS["service"]),
           "service_rss": None if peaks.get("service") is None else peaks["service"] <= TARGETS["service_rss_mb"],
           "training": _ge(ratios["training"], TARGETS["training"])}
    return {"model": tag, "backbone": prep.get("backbone", {}).get("name"), "n_articles": len(articles),
            "target": TARGET, "threads": threads, "int8_engine": int8, "started": started,
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), **cpu_features()},
            "hybrid_share": {k: r["hybrid_share"] for k, r in by_key.items() if "hybrid_share" in r},
            "data": str(Path(opts.data_dir) / TOPIC_FILE), "ratios": ratios, "peak_rss_mb": peaks,
            "targets": TARGETS, "met": met, "rows": rows, "training": training, "int8_vs_fp32_dev": dev}


def cpu_features() -> dict:
    """The CPU's model name and whether it has VNNI (int8 dot products): int8 speed-ups differ
    about 2x between cores with and without it, so a figure means little without this."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model or platform.processor(), "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
            "avx512": "avx512f" in flags}


def _ge(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def bench_command(
    data_dir: Path = typer.Option(..., "--data-dir", help="The shared data folder (topic/ant21/dev.jsonl, ner/anercorp, stance/...)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    n: int = typer.Option(200, "--n", min=1, help="Articles to label in every row."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per row (default: KHABAR_THREADS, else every core)."),
    clients: int = typer.Option(8, "--clients", min=1, help="Concurrent HTTP clients of the service row."),
    train_steps: int = typer.Option(30, "--train-steps", min=2, help="Optimisation steps of each training loop."),
    train_batch: int = typer.Option(16, "--train-batch", min=1, help="Batch size of both training loops."),
    dev_limit: int = typer.Option(300, "--dev-limit", min=0, help="Examples per dev set in the int8 check (0: all)."),
    skip: List[str] = typer.Option([], "--skip", help=f"Rows to leave out (repeat or comma-separate): {', '.join(ROW_KEYS)}."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for bench.json and bench.md (default: KHABAR_HOME/reports)."),
) -> None:
    """Label N real articles with every khabar path and with three plain pipelines; print and save the table.

    Also training examples/s of khabar's loop against transformers.Trainer, and int8 against fp32.
    """
    from benchmarks.bench_report import markdown
    from khabar.models.store import ModelStoreError

    skipped = tuple(s.strip() for spec in skip for s in spec.split(",") if s.strip())
    unknown = [s for s in skipped if s not in ROW_KEYS]
    if unknown:
        typer.echo(f"error: unknown --skip row(s) {unknown}; choose from {', '.join(ROW_KEYS)}", err=True)
        raise typer.Exit(2)
    opts = BenchOptions(data_dir=data_dir, model=model, n=n, threads=threads, clients=clients,
                        train_steps=train_steps, train_batch=train_batch, dev_limit=dev_limit,
                        skip=skipped, out_dir=out)
    try:
        report = run_bench(opts, log=lambda m: typer.echo(m, err=True))
    except (BenchError, ModelStoreError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(markdown(report))
    typer.echo(f"written: {report['paths']['json']} and {report['paths']['md']}", err=True)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(bench_command)

if __name__ == "__main__":
    app(prog_name="python -m benchmarks.bench")
