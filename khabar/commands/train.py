"""`khabar train`: fine-tune a backbone for topic, stance and/or entities from a config."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="Training config (YAML), e.g. configs/offline.yaml."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Sets KHABAR_DATA, the data folder configs refer to as ${KHABAR_DATA}."),
    set_: List[str] = typer.Option([], "--set", help="Override a config value (YAML syntax); a number in the key picks a list element: "
                                                   "--set epochs=2 --set tasks.topic.train.0.limit=500 (the first training source)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Train only these of the config's tasks, comma-separated "
                                        "(e.g. --tasks stance): the rest of the recipe unchanged, to measure a task alone."),
    restart: bool = typer.Option(False, "--restart", help="Discard this config's checkpoints and start over."),
) -> None:
    """Fine-tune a backbone on labelled files and store the model in the BentoML store.

    Running the same command again after a crash resumes from the last checkpoint.
    """
    if data_dir is not None:
        os.environ["KHABAR_DATA"] = str(data_dir.resolve())
    from khabar.models.backbones import BackboneNotFound
    from khabar.training.config import ConfigError, load_config
    from khabar.training.readers import DataError

    try:
        cfg = load_config(config, set_, tasks.split(",") if tasks is not None else None)
        from khabar.training.loop import train

        result = train(cfg, restart=restart, log=lambda m: typer.echo(m, err=True))
    except (ConfigError, DataError, BackboneNotFound, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(result["tag"])


def register(app: typer.Typer) -> None:
    """Add `khabar train`."""
    app.command("train", help="Fine-tune a backbone for topic, stance and entities from a YAML config; resumable.")(train_command)
