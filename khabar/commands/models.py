"""`khabar models list|promote|rollback`: which stored model is served."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import typer

models_app = typer.Typer(no_args_is_help=True, help="List stored models, promote one, roll back.")


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


class _Echo(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # Steps (INFO) indented under the warning that announces them, as `khabar train` shows its own.
        typer.echo(("  " if record.levelno < logging.WARNING else "") + record.getMessage(), err=True)


@contextlib.contextmanager
def _showing_export() -> Iterator[None]:
    """Show khabar's log lines on stderr while the block runs: a model promoted without an int8
    ONNX graph of its weights gets one first (tens of seconds), and the registry and the export say
    so, step by step, with the time it took."""
    logger = logging.getLogger("khabar")
    handler, before = _Echo(), (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # each line once, whatever the root logger does
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])  # setLevel, not .level: the loggers below cache what is enabled
        logger.propagate = before[1]


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
    """Make TAG the model that services and batch jobs use (one atomic step); a model without an
    int8 ONNX graph of its weights gets one first (tens of seconds, shown step by step)."""
    from khabar.models.registry import promote
    from khabar.models.store import ModelStoreError

    try:
        with _showing_export():
            promoted = promote(tag)
        typer.echo(f"promoted {promoted}")
    except ModelStoreError as err:
        _fail(err)


@models_app.command("rollback")
def rollback_command() -> None:
    """Promote again the model that was promoted before the current one."""
    from khabar.models.registry import rollback
    from khabar.models.store import ModelStoreError

    try:
        with _showing_export():
            target = rollback()
        typer.echo(f"rolled back to {target}")
    except ModelStoreError as err:
        _fail(err)


def register(app: typer.Typer) -> None:
    """Add `khabar models`."""
    app.add_typer(models_app, name="models", help="List stored models with stage and metrics; promote one; roll back.")
