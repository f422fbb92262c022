"""`khabar models list|promote|rollback`: which stored model is served."""
from __future__ import annotations

import typer

models_app = typer.Typer(no_args_is_help=True, help="List stored models, promote one, roll back.")


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


@models_app.command("list")
def list_command() -> None:
    """Tag, stage, creation time, tasks and the primary dev metrics of every stored model."""
    from khabar.models.registry import list_models
    from khabar.models.store import ModelStoreError

    try:
        rows = list_models()
    except ModelStoreError as err:
        _fail(err)
    if not rows:
        typer.echo("no models in the store: train one with `khabar train`")
        return
    typer.echo(f"{'tag':32} {'stage':10} {'created':17} {'tasks':20} key dev metrics")
    for r in rows:
        keys = {k: v for k, v in r["metrics"].items() if k.endswith(("macro_f1", "micro_f1"))}
        metrics = ", ".join(f"{k.split('.')[0]}/{k.split('.')[1]} {v:.3f}" for k, v in sorted(keys.items()))
        typer.echo(f"{r['tag']:32} {r['stage']:10} {r['created']:17} {','.join(r['tasks']):20} {metrics}")


@models_app.command("promote")
def promote_command(tag: str = typer.Argument(..., help="Model tag, e.g. khabar:abc123")) -> None:
    """Make TAG the model that services and batch jobs use (one atomic step)."""
    from khabar.models.registry import promote
    from khabar.models.store import ModelStoreError

    try:
        typer.echo(f"promoted {promote(tag)}")
    except ModelStoreError as err:
        _fail(err)


@models_app.command("rollback")
def rollback_command() -> None:
    """Promote again the model that was promoted before the current one."""
    from khabar.models.registry import rollback
    from khabar.models.store import ModelStoreError

    try:
        typer.echo(f"rolled back to {rollback()}")
    except ModelStoreError as err:
        _fail(err)


def register(app: typer.Typer) -> None:
    """Add `khabar models`."""
    app.add_typer(models_app, name="models", help="List stored models with stage and metrics; promote one; roll back.")
