"""`khabar export`: one task of a stored model as a plain Hugging Face folder for `transformers.pipeline`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    task: str = typer.Option(..., "--task", "-t", help="topic, stance or entities."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (created; files in it are replaced)."),
) -> None:
    """Write TASK of MODEL as a folder that `transformers.pipeline` loads without khabar.

    topic/stance -> text-classification (stance: {"text": target, "text_pair": article});
    entities -> token-classification (aggregation_strategy="first"). See the folder's README.md.
    """
    from khabar.models.export import ExportError, export_task
    from khabar.models.store import ModelStoreError, load_model

    if task not in ("topic", "stance", "entities"):
        typer.echo(f"error: --task must be topic, stance or entities, not {task!r}", err=True)
        raise typer.Exit(2)
    try:
        from khabar.models.registry import serving_tag

        loaded = load_model(serving_tag(model))
        path = export_task(loaded, task, out)
    except (ModelStoreError, ExportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(f"exported the {task} head of {loaded.tag} to {path}", err=True)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add `khabar export`."""
    app.command("export", help="Export one task of a stored model as a plain Hugging Face pipeline folder.")(export_command)
