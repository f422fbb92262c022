"""A batch scoring job: options, the run from start (or resume) to the merged output, the summary.

The input is walked once per run and cut into parts (see :mod:`parts`); parts finished by an
earlier run are skipped, the others are scored by an engine (this process, or Ray actors) and
committed one by one. When all parts are done they are merged into OUTPUT.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from khabar.serving.batch.io import count_rows, list_inputs, output_format
from khabar.serving.batch.parts import PartStore, errors_path
from khabar.serving.batch.plan import DEFAULT_MAX_CHARS, InputPlan, Part, fingerprint
from khabar.serving.batch.scorer import Scorer, resolve_model, rows_or_errors

DEFAULT_PART_SIZE = 1000


@dataclass
class ScoreOptions:
    """Everything ``khabar score`` takes; see the command's help for each option."""

    input: Path
    output: Path
    model: str = "khabar:latest"
    targets: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # empty: every task the model has
    actors: list[str] = field(default_factory=list)  # with them, each actor's stance per target
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = 32
    max_chars: int = DEFAULT_MAX_CHARS
    part_size: int = DEFAULT_PART_SIZE
    restart: bool = False
    engine: str = "local"  # or "ray"
    ray_address: str | None = None
    ray_actors: int | None = None
    threads: int | None = None  # torch threads of the local engine (default: KHABAR_THREADS or all)
    progress: bool = True


@dataclass
class JobSummary:
    """What a run did; ``scored`` and the rate cover this run only."""

    output: Path
    rows: int = 0
    scored: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0  # the whole run: startup, reading, scoring, merging
    scoring_seconds: float = 0.0
    already_complete: bool = False

    @property
    def rows_per_s(self) -> float:
        """Rows labelled per second while scoring (model loading and merging left out)."""
        return self.scored / self.scoring_seconds if self.scoring_seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the command prints."""
        if self.already_complete:
            return f"{self.output} is already complete (same job, same inputs); nothing to do"
        errs = f"{self.errors} errors -> {errors_path(self.output)}" if self.errors else "0 errors"
        return (f"{self.rows} rows: {self.scored} scored, {self.skipped} skipped (done by an earlier run), "
                f"{errs}; {self.seconds:.1f} s in all, {self.rows_per_s:.1f} rows/s while scoring "
                f"-> {self.output}")


class Engine(Protocol):
    """Scores the parts that are not done and commits each through the store."""

    def run(self, parts: Iterator[Part], done: set[int], store: PartStore, bar) -> int: ...


class LocalEngine:
    """Scores in this process, one batch of articles at a time.

    It runs the model in the job's own process, so it sets that process's torch threads
    (``opts.threads``, else KHABAR_THREADS, else every core) once, before loading the model.
    """

    def __init__(self, tag: str, opts: ScoreOptions, tasks: list[str] | None) -> None:
        from khabar.settings import use_torch_threads

        use_torch_threads(opts.threads)
        self.scorer = Scorer(tag, tasks=tasks, targets=opts.targets, batch_size=opts.batch_size,
                             threads=opts.threads, actors=opts.actors)
        self.batch_size = opts.batch_size

    def run(self, parts: Iterator[Part], done: set[int], store: PartStore, bar) -> int:
        """Score and commit every part not in ``done``; returns rows labelled."""
        scored = 0
        for part in parts:
            if part.index in done:
                continue
            rows, errors = [], list(part.errors)
            for start in range(0, len(part.valid), self.batch_size):
                chunk = part.valid[start:start + self.batch_size]
                results = self.scorer.score([v[1] for v in chunk])
                rows_or_errors(chunk, results, rows, errors)
                bar.update(len(chunk))
            store.write_part(part.index, rows, errors)
            bar.update(len(part.errors))
            scored += len(rows)
        return scored


def run_job(opts: ScoreOptions, log: Callable[[str], None] = lambda m: None) -> JobSummary:
    """Run (or resume) a batch job to its merged output; raises JobError / InputError / ValueError."""
    from tqdm.auto import tqdm

    started = time.monotonic()
    if opts.batch_size < 1 or opts.part_size < 1:
        raise ValueError("--batch-size and --part-size must be at least 1")
    fmt = output_format(opts.output)
    files = list_inputs(opts.input)
    tag, tasks = resolve_model(opts.model, opts.tasks, opts.actors)
    if "stance" in tasks and not opts.targets and opts.tasks:
        log("note: stance needs --targets; every stance list will be empty")
    fp = fingerprint(model=tag, tasks=tasks, targets=opts.targets, text_field=opts.text_field,
                     id_field=opts.id_field, max_chars=opts.max_chars, files=files, actors=opts.actors)
    from khabar.models.engines import resolve_engine_name

    numeric = resolve_engine_name(None)
    if numeric != "fp32":  # int8 labels differ slightly from fp32: not one job (fp32 jobs keep their fingerprint)
        fp["numeric_engine"] = numeric
    summary = JobSummary(output=opts.output)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    with PartStore(opts.output).open(fp, opts.part_size, restart=opts.restart) as store:
        if store.complete:
            store.remove()
            summary.already_complete = True
            return summary
        size = store.part_size
        if size != opts.part_size:
            log(f"note: resuming with the job's part size {size}")
        total = sum(count_rows(f) for f in files)
        done = store.done_parts()
        summary.skipped = sum(min(size, total - k * size) for k in done if k * size < total)
        if done:
            log(f"resuming: {len(done)} parts ({summary.skipped} rows) already done")
        # Tasks named by the user go to the predictor as asked (so that stance without targets is
        # warned about on every row, as the service does); none named: every task the model has.
        engine = _engine(tag, opts, tasks if opts.tasks else None, log)
        plan = InputPlan(files, opts.input, id_field=opts.id_field, text_field=opts.text_field,
                         max_chars=opts.max_chars)
        with tqdm(total=total, initial=summary.skipped, unit="row", desc="scoring", smoothing=0.1,
                  disable=not opts.progress, dynamic_ncols=True) as bar:
            t0 = time.monotonic()
            summary.scored = engine.run(plan.parts(size), done, store, bar)
            summary.scoring_seconds = time.monotonic() - t0
        log(f"merging {plan.n_parts} parts into {opts.output}")
        summary.rows = plan.rows
        _, summary.errors = store.merge(plan.n_parts, fmt, plan.int_ids)
        store.remove()
    summary.seconds = time.monotonic() - started
    return summary


def _engine(tag: str, opts: ScoreOptions, tasks: list[str] | None, log) -> Engine:
    if opts.engine == "local":
        return LocalEngine(tag, opts, tasks)
    if opts.engine == "ray":
        from khabar.serving.batch.ray_engine import RayEngine

        return RayEngine(tag, opts, tasks, log)
    raise ValueError(f"unknown engine {opts.engine!r}; use local or ray")
