"""`khabar bench`: khabar against plain Hugging Face pipelines on the same weights (speed, memory,
label agreement), plus training throughput against transformers.Trainer."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def bench_command(
    data_dir: Path = typer.Option(..., "--data-dir", help="The shared data folder (topic/ant21/dev.jsonl, ner/anercorp, stance/...)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    n: int = typer.Option(200, "--n", min=1, help="Articles to label in every row."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per row (default: KHABAR_THREADS, else every core)."),
    clients: int = typer.Option(8, "--clients", min=1, help="Concurrent HTTP clients of the service row."),
    train_steps: int = typer.Option(30, "--train-steps", min=2, help="Optimisation steps of each training loop."),
    train_batch: int = typer.Option(16, "--train-batch", min=1, help="Batch size of both training loops."),
    dev_limit: int = typer.Option(300, "--dev-limit", min=0, help="Examples per dev set in the int8 check (0: all)."),
    skip: List[str] = typer.Option([], "--skip", help="Rows to leave out (repeat or comma-separate): baseline, fp32, onnx-int8, torch-int8, onnx-int8-streams, service, batch, training, dev, actors."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for bench.json and bench.md (default: KHABAR_HOME/reports)."),
) -> None:
    """Label N real articles with every khabar path and with three plain pipelines; print and save the table."""
    from khabar.eval.bench import ROW_KEYS, BenchError, BenchOptions, run_bench
    from khabar.eval.bench_report import markdown
    from khabar.models.store import ModelStoreError

    skipped = tuple(s.strip() for spec in skip for s in spec.split(",") if s.strip())
    unknown = [s for s in skipped if s not in ROW_KEYS]
    if unknown:
        typer.echo(f"error: unknown --skip row(s) {unknown}; choose from {', '.join(ROW_KEYS)}", err=True)
        raise typer.Exit(2)
    from khabar.models.registry import serving_tag

    try:
        model = serving_tag(model)
    except ModelStoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
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


def register(app: typer.Typer) -> None:
    """Add `khabar bench`."""
    app.command("bench", help="Speed, memory and label agreement against plain HF pipelines on the same weights; training vs Trainer.")(bench_command)
