"""The in-process rows of the bench (`python -m benchmarks.bench`), each in its own child process.

``python -m benchmarks.bench_rows ROW SPEC.json OUT.json`` runs one row and writes its figures,
so every row starts from a fresh interpreter (no warm caches from an earlier row) and its peak RSS
is its own. Rows: ``prepare`` (export the three pipeline folders, build the ONNX cache),
``baseline`` (three ``transformers.pipeline``s, one article at a time), ``predictor`` (khabar's
predictor with one engine), ``training`` (see :mod:`benchmarks.bench_train`) and ``dev``
(int8 against fp32 on dev sets).

A row's labels come back as ``{"topic": label, "stance": label, "entities": [[start, end, type]]}``
per article, with offsets into the article as sent, so the driver can compare any two rows.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size of a process (Linux VmHWM), in MB; None where unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    if pid == "self":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return None


def summarize(result: dict) -> dict:
    """The comparable part of one predictor / service / batch result."""
    topic = result.get("topic") or {}
    stance = result.get("stance") or []
    return {"topic": topic.get("label"), "stance": stance[0]["label"] if stance else None,
            "entities": sorted([e["start"], e["end"], e["label"]] for e in result.get("entities") or [])}


def read_articles(path: Path) -> list[dict]:
    """The bench's articles (``id``, ``text``, ``label``) from its JSON Lines file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _threads(spec: dict) -> int:
    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    return threads


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="article", dynamic_ncols=True, file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)


class EngineClock:
    """Wraps an engine: time spent in it, windows and tokens it encoded (for "where the time goes")."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.reset()

    def reset(self) -> None:
        """Forget what was counted (after the warm-up)."""
        self.seconds, self.windows, self.tokens, self.padded = 0.0, 0, 0, 0

    def __call__(self, batch, tasks):
        t0 = time.perf_counter()
        out = self.engine(batch, tasks)
        self.seconds += time.perf_counter() - t0
        self._count(batch, tasks)
        return out

    def _count(self, batch, tasks) -> None:
        self.sample = (batch, tasks)  # the last batch: what the op profile replays
        self.windows += int(batch["input_ids"].shape[0])
        self.tokens += int(batch["attention_mask"].sum())
        self.padded += int(batch["input_ids"].numel())

    def map(self, batches, tasks):
        """Outputs of ``batches`` in order, through the inner engine's ``map`` (batches side by
        side) when it has one, clocked as the wall time spent waiting for each output."""
        inner = getattr(self.engine, "map", None)
        if inner is None:
            for batch in batches:
                yield self(batch, tasks)
            return

        def counted():
            for batch in batches:
                self._count(batch, tasks)
                yield batch
        outputs = inner(counted(), tasks)
        while True:
            t0 = time.perf_counter()
            out = next(outputs, None)
            self.seconds += time.perf_counter() - t0
            if out is None:
                return
            yield out

    def figures(self, n: int, seconds: float) -> dict:
        """Per-article work and the share of wall time spent in the model."""
        return {"model_share": self.seconds / seconds if seconds else None, "windows_per_article": self.windows / n,
                "tokens_per_article": self.tokens / n, "padded_tokens_per_article": self.padded / n}


def op_profile(engine, batch, tasks, top: int = 8) -> list[list]:
    """Share of model time per operator type on one batch: ``[[op, share], ...]``, largest first.

    ONNX Runtime's own profiler for the ONNX engine, torch.profiler for the PyTorch ones.
    """
    import collections

    shares: collections.Counter = collections.Counter()
    inner = getattr(engine, "engine", engine)
    if hasattr(inner, "session"):  # OnnxEngine: a profiling session on the same file
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = inner.session.get_session_options().intra_op_num_threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"khabar-ort-{os.getpid()}")
        sess = ort.InferenceSession(str(inner.path), opts, providers=["CPUExecutionProvider"])
        ids = batch["input_ids"].numpy()
        feed = {"input_ids": ids, "attention_mask": batch["attention_mask"].numpy(),
                "token_type_ids": batch["token_type_ids"].numpy() if "token_type_ids" in batch else ids * 0}
        sess.run(None, feed)
        trace = Path(sess.end_profiling())
        for ev in json.loads(trace.read_text()):
            if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
                shares[ev["args"]["op_name"]] += ev["dur"]
        trace.unlink(missing_ok=True)
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            inner(batch, tasks)
        for ev in prof.key_averages():
            if "::" in ev.key:  # aten:: and quantized:: operators (self time: no double counting)
                shares[ev.key] += ev.self_cpu_time_total
    total = sum(shares.values()) or 1
    return [[op, t / total] for op, t in shares.most_common(top)]


def _clock_pipeline(pipe, clock: EngineClock) -> None:
    """Count a pipeline model's forward passes into ``clock`` (hooks; the pipeline is unchanged)."""
    starts = []

    def before(module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        mask = kwargs.get("attention_mask")
        clock.windows += int(ids.shape[0])
        clock.tokens += int(mask.sum()) if mask is not None else int(ids.numel())
        clock.padded += int(ids.numel())
        starts.append(time.perf_counter())

    def after(module, args, kwargs, output):
        clock.seconds += time.perf_counter() - starts.pop()

    pipe.model.register_forward_pre_hook(before, with_kwargs=True)
    pipe.model.register_forward_hook(after, with_kwargs=True)


# -- rows ----------------------------------------------------------------------------------------
def row_prepare(spec: dict) -> dict:
    """Export the three pipeline folders and build the int8 engines' caches (not timed)."""
    from khabar.models.engines import OnnxEngine
    from benchmarks.pipeline_export import EXPORT_FILE, export_task
    from khabar.models.store import load_model

    _threads(spec)
    loaded = load_model(spec["tag"])
    hf = Path(spec["hf_dir"])
    for task in ("topic", "stance", "entities"):
        info = hf / task / EXPORT_FILE
        if not (info.exists() and json.loads(info.read_text(encoding="utf-8")).get("model") == loaded.tag):
            export_task(loaded, task, hf / task)
    if spec.get("onnx", True):
        OnnxEngine.for_model(loaded, threads=int(spec["threads"]),
                             progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    return {"tag": loaded.tag, "schema": {"max_length": loaded.schema.max_length,
                                          "stride": loaded.schema.stride},
            "backbone": loaded.schema.backbone}


def row_baseline(spec: dict) -> dict:
    """Three plain pipelines (topic, stance pair, entities), fp32, one article at a time.

    What a user of the exported folders would write: normalize as khabar does, then call the
    pipelines one after another. Topic and stance see the first window (``truncation``); the
    entity pipeline covers the whole article with khabar's stride.
    """
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from khabar.models.normalize import normalize

    _threads(spec)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")  # the entity pipeline warns on every call for non-WordPiece vocabularies
    hf = Path(spec["hf_dir"])
    topic = pipeline("text-classification", model=str(hf / "topic"), device="cpu")
    stance = pipeline("text-classification", model=str(hf / "stance"), device="cpu")
    ner = pipeline("token-classification", model=str(hf / "entities"), device="cpu",
                   aggregation_strategy="first", stride=int(spec["stride"]))
    target = normalize(spec["target"]).text
    clock = EngineClock(None)
    for pipe in (topic, stance, ner):
        _clock_pipeline(pipe, clock)

    def one(text: str) -> dict:
        norm = normalize(text)
        t = topic(norm.text, truncation=True)
        s = stance({"text": target, "text_pair": norm.text}, truncation="only_second")
        ents = ner(norm.text)
        t = t[0] if isinstance(t, list) else t
        s = s[0] if isinstance(s, list) else s
        spans = [[*norm.span_to_original(int(e["start"]), int(e["end"])), e["entity_group"]] for e in ents]
        return {"topic": t["label"], "stance": s["label"], "entities": sorted(spans)}

    articles = read_articles(Path(spec["articles"]))
    for a in articles[: spec.get("warmup", 2)]:
        one(a["text"])
    clock.reset()
    labels, lat = [], []
    bar = _progress(len(articles), "baseline")
    cpu0, start = time.process_time(), time.perf_counter()
    for a in articles:
        t0 = time.perf_counter()
        labels.append(one(a["text"]))
        lat.append((time.perf_counter() - t0) * 1000)
        bar.update(1)
    seconds = time.perf_counter() - start
    bar.close()
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu0, "latencies_ms": lat, "labels": labels,
            "work": clock.figures(len(articles), seconds)}


def row_predictor(spec: dict) -> dict:
    """khabar's predictor in this process with one engine, ``chunk`` articles per call."""
    from khabar.models.engines import make_engine, resolve_engine_name
    from khabar.models.predictor import Article, Predictor
    from khabar.models.store import load_model

    threads = _threads(spec)
    loaded = load_model(spec["tag"])
    engine = EngineClock(make_engine(spec["engine"], loaded, threads=threads, streams=spec.get("streams")))
    predictor = Predictor.from_loaded(loaded, batch_size=int(spec.get("batch_size", 16)), engine=engine)
    if resolve_engine_name(spec["engine"]) == "onnx-int8":
        loaded.model = None  # ONNX Runtime holds its own weights; the fp32 copy can go
    articles = read_articles(Path(spec["articles"]))
    targets = [spec["target"]]
    predictor.label([Article(a["text"], targets) for a in articles[: spec.get("warmup", 2)]])
    engine.reset()
    chunk = int(spec.get("chunk", 32))
    labels, lat = [], []
    bar = _progress(len(articles), f"predictor {spec['engine']}")
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(0, len(articles), chunk):
        part = articles[i: i + chunk]
        t0 = time.perf_counter()
        out = predictor.label([Article(a["text"], targets) for a in part])
        dt = (time.perf_counter() - t0) * 1000
        labels += [summarize(r) for r in out]
        lat += [dt] * len(part)  # every article of a call waits for the whole call
        bar.update(len(part))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu0
    bar.close()
    work = engine.figures(len(articles), seconds)
    work["hybrid_seconds"] = hybrid_seconds(loaded.hybrid, [a["text"] for a in articles], targets[0])
    try:
        work["op_profile"] = op_profile(engine, *engine.sample)
    except Exception as err:  # noqa: BLE001 - a profile is a bonus, never a failure
        work["op_profile_error"] = f"{type(err).__name__}: {err}"
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "latencies_ms": lat, "labels": labels,
            "engine": resolve_engine_name(spec["engine"]), "work": work}


def hybrid_seconds(hybrid: dict, texts: list[str], target: str) -> float:
    """Seconds the hybrid heads add for ``texts`` (linear part + stacker, topic and one stance
    target), timed alone on the same articles: the part of the predictor's time they cost."""
    import numpy as np

    from khabar.models.hybrid import fields_for

    t0 = time.perf_counter()
    for task, head in hybrid.items():
        fields = fields_for(task, texts, [target] * len(texts) if task == "stance" else None)
        p_lin = head.linear.proba(fields)
        head.blend(np.full_like(p_lin, 1.0 / p_lin.shape[1]), p_lin, texts)
    return time.perf_counter() - t0


def row_dev(spec: dict) -> dict:
    """int8 against fp32 on dev sets: stance macro-F1 and NER micro-F1 per set (topic accuracy
    comes from the predictor rows, on the bench's own dev articles)."""
    from khabar.models.engines import make_engine, resolve_engine_name
    from khabar.models.predictor import Predictor
    from khabar.models.store import load_model
    from khabar.training.config import Source
    from khabar.training.data import read_source
    from khabar.training.scoring import score_examples

    threads = _threads(spec)
    loaded = load_model(spec["tag"])
    int8 = resolve_engine_name(spec.get("engine", "int8"))
    predictors = {
        "fp32": Predictor.from_loaded(loaded),
        int8: Predictor.from_loaded(loaded, engine=make_engine(int8, loaded, threads=threads)),
    }
    sets = []
    for task, name, path in spec["sets"]:
        if task not in loaded.schema.tasks:
            continue
        limit = int(spec.get("limit") or 0) or None
        examples = read_source(task, Source(path=path, name=name, limit=limit), seed=13).examples
        labels = loaded.schema.tasks[task] if task != "ner" else None
        entry = {"task": task, "set": name, "n": len(examples)}
        for engine, pred in predictors.items():
            t0 = time.perf_counter()
            m = score_examples(pred, task, examples, labels).metrics
            key = "micro_f1" if task == "ner" else "macro_f1"
            entry[engine] = {key: m[key], **({"accuracy": m["accuracy"]} if "accuracy" in m else {}),
                             "seconds": time.perf_counter() - t0}
        print(f"  dev {task}/{name}: {json.dumps({k: entry[k] for k in predictors})}", file=sys.stderr, flush=True)
        sets.append(entry)
    return {"engine": int8, "sets": sets}


def row_actors(spec: dict) -> dict:
    """Latency of labelling one 600-word article with 1 target and 4 actors, against the same call
    without actors (int8 engine as served), one article per call as /label gets them. The actors
    are four PERS / ORG names the model itself finds in each article (what a user would track)."""
    import numpy as np

    from khabar.models.engines import make_engine
    from khabar.models.predictor import Article, Predictor
    from khabar.models.store import load_model

    threads = _threads(spec)
    loaded = load_model(spec["tag"])
    predictor = Predictor.from_loaded(loaded, engine=make_engine(spec.get("engine"), loaded, threads=threads))
    words = int(spec.get("words", 600))
    articles = [a for a in read_articles(Path(spec["articles"])) if len(a["text"].split()) >= words]
    texts = [" ".join(a["text"].split()[:words]) for a in articles[: int(spec.get("n_actors", 20))]]
    if not texts:
        return {"skipped": f"no article of {words} words or more"}
    calls = []
    for text in texts:
        ents = predictor.label_one(text, tasks=["entities"])["entities"]
        names = list(dict.fromkeys(e["text"] for e in ents if e["label"] in ("PERS", "ORG")))[:4]
        calls.append((text, names))
    predictor.label([Article(calls[0][0], [spec["target"]], actors=calls[0][1])])  # warm-up
    plain, with_actors = [], []
    for text, names in calls:
        for out, actors in ((plain, ()), (with_actors, names)):
            t0 = time.perf_counter()
            predictor.label([Article(text, [spec["target"]], actors=actors)])
            out.append((time.perf_counter() - t0) * 1000)
    return {"n": len(calls), "words": words, "actors_per_article": float(np.mean([len(n) for _, n in calls])),
            "plain_ms": {"p50": float(np.percentile(plain, 50)), "p95": float(np.percentile(plain, 95))},
            "actors_ms": {"p50": float(np.percentile(with_actors, 50)), "p95": float(np.percentile(with_actors, 95))},
            "ratio_p50": float(np.percentile(with_actors, 50) / np.percentile(plain, 50))}


ROWS = {"prepare": row_prepare, "baseline": row_baseline, "predictor": row_predictor, "dev": row_dev,
        "actors": row_actors}


def main(argv: list[str]) -> int:
    """``ROW SPEC.json OUT.json``: run one row, write its result (plus peak RSS) as JSON."""
    row, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if row == "training":
        from benchmarks.bench_train import row_training as fn
    else:
        fn = ROWS[row]
    result = fn(spec)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
