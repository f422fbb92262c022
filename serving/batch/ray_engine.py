"""The Ray engine: Ray Data ``map_batches`` over a pool of actors, each loading the model once.

The driver walks the input exactly as the local engine does (same row checks, same parts), puts
the texts of the parts still to do into the object store (one block per model batch, spilled to
disk by Ray when large), and streams the labelled rows back. A part is committed through the same journal
as soon as all its rows are back, so a killed job resumes the same way whichever engine ran it.
Workers must see the model store: on a local Ray they inherit this process's KHABAR_HOME; on a
cluster (``--ray-address``) KHABAR_HOME must be on storage every node mounts at the same path.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Iterator

from khabar.serving.batch.parts import PartStore
from khabar.serving.batch.plan import Part
from khabar.serving.batch.scorer import rows_or_errors

# Variables the workers need to find the model store and stay offline and quiet.
_WORKER_ENV = ("KHABAR_HOME", "BENTOML_HOME", "HF_HOME", "HF_HUB_OFFLINE", "BENTOML_DO_NOT_TRACK",
               "RAY_USAGE_STATS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "TOKENIZERS_PARALLELISM",
               "KHABAR_ENGINE")


class RayScorer:
    """The actor UDF: loads the model once in ``__init__``, labels a pyarrow batch per call.

    Each actor is a process of its own: it sets its torch threads (1 CPU per actor) before loading.
    """

    def __init__(self, tag: str, tasks: list[str] | None, targets: list[str], batch_size: int, threads: int,
                 actors: list[str] = ()) -> None:
        from khabar.serving.batch.scorer import Scorer
        from khabar.settings import use_torch_threads

        use_torch_threads(threads)

        self.scorer = Scorer(tag, tasks=tasks, targets=targets, batch_size=batch_size, threads=threads,
                             actors=actors)

    def __call__(self, batch):
        import pyarrow as pa

        results = self.scorer.score(batch.column("text").to_pylist())
        labels = [json.dumps(r, ensure_ascii=False) if r is not None else None for r, _ in results]
        reasons = [reason for _, reason in results]
        return pa.table({"part": batch.column("part"), "pos": batch.column("pos"),
                         "labels": pa.array(labels, pa.string()), "error": pa.array(reasons, pa.string())})


class RayEngine:
    """Starts (or joins) Ray and scores the parts that are not done on a pool of actors."""

    def __init__(self, tag: str, opts, tasks: list[str] | None, log) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise ImportError("the Ray engine needs Ray: pip install 'khabar[ray]' (or make setup-ray)") from None
        self.ray = ray
        self.tag, self.tasks, self.opts, self.log = tag, tasks, opts, log
        self.started_ray = False
        if not ray.is_initialized():
            self._init(opts.ray_address)
        ray.data.DataContext.get_current().enable_progress_bars = False  # the job has its own bar
        # Ray Data logs each execution plan and that its bars are off; failures still raise.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.actors = max(1, opts.ray_actors or cpus)
        self.log(f"ray: {self.actors} actor(s) on {cpus} CPU(s)")

    def _init(self, address: str | None) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
        if address:
            env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
            self.ray.init(address=address, runtime_env={"env_vars": env}, **quiet)
        else:
            cpus = self.opts.ray_actors or len(os.sched_getaffinity(0))
            self.ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        self.started_ray = True

    def run(self, parts: Iterator[Part], done: set[int], store: PartStore, bar) -> int:
        """Score and commit every part not in ``done``; returns rows labelled."""
        try:
            return self._run(parts, done, store, bar)
        finally:
            self.close()

    def _run(self, parts: Iterator[Part], done: set[int], store: PartStore, bar) -> int:
        import pyarrow as pa

        pending: dict[int, dict] = {}
        refs = []
        for part in parts:
            if part.index in done:
                continue
            if not part.valid:
                store.write_part(part.index, [], part.errors)
                bar.update(part.size)
                continue
            n = len(part.valid)
            # One block per model batch, so that every actor gets work (an actor takes whole blocks).
            for start in range(0, n, self.opts.batch_size):
                stop = min(start + self.opts.batch_size, n)
                refs.append(self.ray.put(pa.table({
                    "part": pa.array([part.index] * (stop - start), pa.int64()),
                    "pos": pa.array(range(start, stop), pa.int64()),
                    "text": pa.array([v[1] for v in part.valid[start:stop]], pa.string())})))
            # The texts now live in the object store; the driver keeps ids and where rows came from.
            part.valid = [(id_, None, source, row) for id_, _, source, row in part.valid]
            pending[part.index] = {"part": part, "results": [None] * n, "left": n}
        return self._stream(refs, pending, store, bar) if refs else 0

    def _stream(self, refs, pending: dict[int, dict], store: PartStore, bar) -> int:
        ds = self.ray.data.from_arrow_refs(refs).map_batches(
            RayScorer, batch_format="pyarrow", batch_size=self.opts.batch_size,
            compute=self.ray.data.ActorPoolStrategy(size=self.actors), num_cpus=1,
            fn_constructor_kwargs={"tag": self.tag, "tasks": self.tasks, "targets": list(self.opts.targets),
                                   "actors": list(self.opts.actors),
                                   "batch_size": self.opts.batch_size, "threads": 1})
        scored = 0
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            cols = [batch.column(c).to_pylist() for c in ("part", "pos", "labels", "error")]
            for k, pos, labels, reason in zip(*cols):
                entry = pending.get(k)
                if entry is None:  # a late duplicate of a part already committed
                    continue
                if entry["results"][pos] is None:  # a retried batch must not count twice
                    entry["left"] -= 1
                    bar.update(1)
                entry["results"][pos] = (json.loads(labels) if labels is not None else None, reason)
                if entry["left"] == 0:
                    part = entry["part"]
                    rows, errors = [], list(part.errors)
                    rows_or_errors(part.valid, entry["results"], rows, errors)
                    store.write_part(k, rows, errors)
                    bar.update(len(part.errors))
                    scored += len(rows)
                    del pending[k]
        if pending:
            raise RuntimeError(f"Ray returned no labels for parts {sorted(pending)[:5]}; rerun the same command")
        return scored

    def close(self) -> None:
        """Shut down the local Ray this engine started (a joined cluster is left running)."""
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False
