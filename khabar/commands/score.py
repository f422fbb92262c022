"""`khabar score`: label a file (or folder) of articles with a stored model; resumable."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


class EngineName(str, Enum):
    """Where rows are scored."""

    local = "local"
    ray = "ray"


def score_command(
    input: Path = typer.Argument(..., help="A .jsonl, .csv or .parquet file, or a folder of them."),
    output: Path = typer.Option(..., "--output", "-o", help="Where labels go: .jsonl, .csv or .parquet (by extension)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    targets: List[str] = typer.Option([], "--targets", "--target", "-t", help="A stance target; repeat for several: -t 'A' -t 'B'."),
    actors: List[str] = typer.Option([], "--actor", "--actors", "-a", help="An actor to track (a name or group noun); repeat for several. Adds the 'actors' column: each actor's stance toward each target, with mentions and evidence."),
    tasks: List[str] = typer.Option([], "--tasks", help="topic, stance, entities (repeat or comma-separate); default: all the model has."),
    text_field: str = typer.Option("text", "--text-field", help="Field/column holding the article text."),
    id_field: str = typer.Option("id", "--id-field", help="Field/column holding the article id."),
    batch_size: int = typer.Option(32, "--batch-size", help="Articles per model call."),
    engine: EngineName = typer.Option(EngineName.local, "--engine", help="local (this process) or ray (Ray Data actors)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of starting a local one."),
    ray_actors: Optional[int] = typer.Option(None, "--ray-actors", help="Actors (1 CPU each); default: one per CPU of the cluster."),
    max_chars: int = typer.Option(100_000, "--max-chars", help="Longer texts become error rows."),
    part_size: int = typer.Option(1000, "--part-size", help="Input rows per part (the unit of resuming)."),
    restart: bool = typer.Option(False, "--restart", help="Discard an unfinished job of OUTPUT and start over (OUTPUT is overwritten at the end)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Label every article of INPUT into OUTPUT; error rows go to OUTPUT.errors.jsonl.

    Running the same command again after a crash resumes where it stopped; the output then has
    exactly one row per valid input id. Other options or another model refuse to resume unless
    --restart is given.
    """
    from khabar.models.registry import serving_tag
    from khabar.models.store import ModelStoreError
    from khabar.serving.batch import InputError, JobError, ScoreOptions, run_job

    try:
        model = serving_tag(model)
    except ModelStoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    opts = ScoreOptions(
        input=input, output=output, model=model, targets=list(targets), actors=list(actors),
        tasks=[t.strip() for spec in tasks for t in spec.split(",") if t.strip()],
        text_field=text_field, id_field=id_field, batch_size=batch_size, max_chars=max_chars,
        part_size=part_size, restart=restart, engine=engine.value, ray_address=ray_address,
        ray_actors=ray_actors, progress=not quiet)
    try:
        summary = run_job(opts, log=lambda m: typer.echo(m, err=True))
    except (JobError, InputError, ModelStoreError, ValueError, ImportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(summary.line(), err=True)
    typer.echo(str(output))


def register(app: typer.Typer) -> None:
    """Add `khabar score`."""
    app.command("score", help=(
        "Label a file or folder of articles (JSONL/CSV/Parquet) into a file, locally or on Ray. Error rows go "
        "to OUTPUT.errors.jsonl. After a crash, rerun the same command: it resumes, and OUTPUT gets exactly "
        "one row per valid id."))(score_command)
