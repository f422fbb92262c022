"""`khabar hybrid`: fit the hybrid topic and stance heads of a stored model (training/hybrid.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def hybrid_command(
    model: str = typer.Option(..., "--model", "-m", help="Stored model whose encoder the heads blend with (khabar:VERSION)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Sets KHABAR_DATA for configs that refer to ${KHABAR_DATA}; recorded absolute paths are used as they are."),
    max_blend_rows: Optional[int] = typer.Option(None, "--max-blend-rows", min=50, help="At most this many blend rows per training source (topic: articles outside the encoder's subsample). Default: the model's training config (blend_max_rows, 2000 unless set)."),
) -> None:
    """Fit a TF-IDF linear part on all of each task's training rows, a stacker and decision offsets
    on rows the encoder never trained on, and store them with a copy of the model as a new
    version (the model given is left as it is). Prints the new tag."""
    if data_dir is not None:
        os.environ["KHABAR_DATA"] = str(data_dir.resolve())
    from khabar.models.store import ModelStoreError, load_model, save_model
    from khabar.settings import use_torch_threads
    from khabar.training.config import ConfigError, from_dict
    from khabar.training.hybrid import fit_hybrid
    from khabar.training.readers import DataError

    use_torch_threads()  # the encoder runs in this process: KHABAR_THREADS, else every core
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        loaded = load_model(model)
        cfg = from_dict(loaded.training["config"], where=f"{loaded.tag} training.json")
        heads = fit_hybrid(loaded, cfg, max_blend_rows=max_blend_rows, log=log)
    except (ModelStoreError, ConfigError, DataError, FileNotFoundError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    if not heads:
        typer.echo("error: no task has training rows outside the encoder's to fit a blend on", err=True)
        raise typer.Exit(1)
    training = {**loaded.training, "hybrid": {t: h.info for t, h in heads.items()}, "hybrid_of": loaded.tag}
    extras = [p for p in loaded.path.iterdir() if p.suffix in {".jsonl", ".png"}]
    tag = save_model(loaded.model, loaded.tokenizer, training=training, hybrid=heads, extra_files=extras,
                     labels={"stage": "trained", "hybrid_of": loaded.tag.partition(":")[2]})
    typer.echo(tag)


def register(app: typer.Typer) -> None:
    """Add `khabar hybrid`."""
    app.command("hybrid", help="Fit hybrid topic/stance heads (TF-IDF linear part + stacker + decision "
                "offsets) for a stored model; stores a new version.")(hybrid_command)
