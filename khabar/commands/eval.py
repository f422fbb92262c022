"""`khabar eval`: measure a stored model on held-out files; write metrics.json and a report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def eval_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    topic: Optional[Path] = typer.Option(None, "--topic", help="Topic file (JSONL/CSV, ../shared/data format)."),
    stance: List[Path] = typer.Option([], "--stance", help="Stance file; repeat for several (scored per file)."),
    ner: List[Path] = typer.Option([], "--ner", help="NER file (CoNLL); repeat for several."),
    actors: Optional[Path] = typer.Option(None, "--actors", help="Actor-stance file (data/sample/actors.jsonl format): accuracy, macro-F1, mention grouping, against the article-stance baseline."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="A ../shared/data-style folder: its dev splits fill in the tasks not given as files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json, report.md and report.html."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Also evaluate this model tag on the same files; report deltas with significance."),
    baseline: bool = typer.Option(False, "--baseline", help="Train a TF-IDF / CRF baseline on the model's recorded training data and score it too."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score a fixed subset of at most N examples per file (quick runs)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for intervals and paired tests."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows per forward pass."),
    stance_windows: Optional[str] = typer.Option(None, "--stance-windows", help="Ablation: read N windows per (article, target), or 'all', instead of what the model was trained with."),
    topic_windows: Optional[str] = typer.Option(None, "--topic-windows", help="Ablation: pool topic over the first N windows of each article, or 'all', instead of what the model was stored with."),
    ner_decoding: str = typer.Option("viterbi", "--ner-decoding", help="Ablation: 'argmax' decodes each word alone instead of the BIO-constrained Viterbi path."),
) -> None:
    """Evaluate a model on labelled files (with a baseline and a second model, if asked).

    Bad input (a missing or empty file, a task the model lacks, an unknown tag) stops with exit
    code 2 before any model is loaded.
    """
    from khabar.eval.datasets import EvalInputError
    from khabar.eval.pipeline import prepare, run_evaluation
    from khabar.models.store import ModelStoreError

    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    for flag, value in (("--stance-windows", stance_windows), ("--topic-windows", topic_windows)):
        if value is not None and value != "all" and not (value.isdigit() and int(value) > 0):
            typer.echo(f"error: {flag} must be a positive number or 'all', got {value!r}", err=True)
            raise typer.Exit(2)
    if ner_decoding not in ("viterbi", "argmax"):
        typer.echo(f"error: --ner-decoding must be 'viterbi' or 'argmax', got {ner_decoding!r}", err=True)
        raise typer.Exit(2)
    from khabar.settings import use_torch_threads

    use_torch_threads()  # the models run in this process: KHABAR_THREADS, else every core
    try:
        from khabar.models.registry import serving_tag

        model = serving_tag(model)
        if actors is not None:
            _eval_actors(model, actors, out, log)
            if not (topic or stance or ner or data_dir):
                return
        sets, settings = prepare(model, topic=topic, stance=stance, ner=ner, data_dir=data_dir,
                                 compare=compare, limit=limit)
    except (EvalInputError, ModelStoreError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    from khabar.eval.report import write_report

    ev = run_evaluation(settings["model"], sets, settings, compare=compare, baseline=baseline,
                        n_boot=bootstrap, batch_size=batch_size, log=log, stance_windows=stance_windows,
                        topic_windows=topic_windows, ner_decoding=ner_decoding)
    paths = write_report(ev, out)
    tp = ev.model.throughput()
    log(f"throughput: {tp['articles_per_s']:.1f} articles/s")
    for w in ev.warnings:
        log(f"warning: {w}")
    typer.echo(str(paths["html"]))


def _eval_actors(model: str, path: Path, out: Path, log) -> None:
    """Score actor stance on ``path``; writes actors.json and actors.md under ``out``."""
    import json

    from tqdm.auto import tqdm

    from khabar.eval.actors import ActorsFileError, actors_markdown, evaluate_actors, read_actors_file
    from khabar.models.predictor import Predictor
    from khabar.models.store import load_model

    try:
        rows = read_actors_file(path)
    except (OSError, ActorsFileError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    loaded = load_model(model)
    with tqdm(total=len(rows), desc="actor stance", unit="article") as bar:
        m = evaluate_actors(Predictor.from_loaded(loaded), rows, progress=bar.update)
    out.mkdir(parents=True, exist_ok=True)
    (out / "actors.json").write_text(json.dumps({"model": loaded.tag, "file": str(path), **m}, ensure_ascii=False,
                                                indent=2), encoding="utf-8")
    (out / "actors.md").write_text(actors_markdown(m, loaded.tag, str(path)), encoding="utf-8")
    log(f"actors: macro-F1 {m['macro_f1']:.3f} (article-stance baseline {m['baseline_article_stance']['macro_f1']:.3f}), "
        f"grouping {m['grouping_accuracy']:.1%}, {m['n']} rows -> {out / 'actors.md'}")


def register(app: typer.Typer) -> None:
    """Add `khabar eval`."""
    app.command("eval", help="Evaluate a stored model on held-out files: metrics.json, report.md, report.html (baseline and comparison optional).")(eval_command)
