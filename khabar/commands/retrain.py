"""`khabar retrain`: learn new labelled rows without losing what the model knew (gated)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

# Exit codes: 0 the gate passed (and the candidate was promoted unless --no-promote),
# 1 an input or store error (nothing trained), 3 the gate refused the candidate.
GATE_REFUSED = 3


def retrain_command(
    base: str = typer.Option(..., "--base", "-b", help="The model to improve (tag, e.g. khabar:abc123; khabar:latest works)."),
    new: List[str] = typer.Option(..., "--new", help="New labelled file; repeat for several. The task comes from the format (CoNLL -> ner; JSONL/CSV with target -> stance; with label -> topic) or a prefix: topic:FILE."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML whose settings (epochs, lr, ...) replace the base model's recorded ones; its dev sets replace the base's, its training files are ignored."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting: --set epochs=1 --set lr=2e-5"),
    heldout: List[str] = typer.Option([], "--heldout", help="Extra held-out file both models are scored on (besides the base model's dev sets); same task rules as --new."),
    tolerance: float = typer.Option(0.5, "--tolerance", help="Largest drop, in points (0.5 = 0.005 F1), of any task's primary metric."),
    new_data_tolerance: float = typer.Option(0.0, "--new-data-tolerance", help="Largest drop, in points, of a task that received new rows (default: none at all)."),
    start_from: str = typer.Option("base", "--from", help="base: fine-tune the base model's weights; backbone: train anew from the backbone."),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="Promote the candidate when the gate passes."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score at most N examples per held-out file (a fixed subset; quicker, less sure)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Sets KHABAR_DATA (for a --config that uses ${KHABAR_DATA})."),
) -> None:
    """Merge new rows into the base model's training data, fine-tune a candidate, and promote it
    only if the evaluation gate passes.

    Duplicates (same id or same normalized text) are removed; the same text with another label
    is reported and the newer label wins. Candidate and base are scored on the same held-out
    files; the comparison report and gate.json go to KHABAR_HOME/reports/retrain-<version>/.
    Killed at any point, the promoted model is untouched; the same command again resumes.
    Run it from the folder the base model was trained in when its config used relative paths.
    """
    if data_dir is not None:
        os.environ["KHABAR_DATA"] = str(data_dir.resolve())
    if tolerance < 0 or new_data_tolerance < 0:
        typer.echo("error: tolerances are allowed drops in points and cannot be negative", err=True)
        raise typer.Exit(1)
    from khabar.eval.datasets import EvalInputError
    from khabar.models.backbones import BackboneNotFound
    from khabar.models.store import ModelStoreError
    from khabar.retrain import RetrainOptions, retrain
    from khabar.settings import use_torch_threads
    from khabar.training.config import ConfigError
    from khabar.training.merge import MergeError
    from khabar.training.readers import DataError

    use_torch_threads()  # training and both evaluations run here: KHABAR_THREADS, else every core
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    opts = RetrainOptions(base=base, new=list(new), config=config, overrides=list(set_), heldout=list(heldout),
                          tolerance=tolerance / 100.0, new_data_tolerance=new_data_tolerance / 100.0,
                          start_from=start_from, promote=promote, limit=limit)
    try:
        result = retrain(opts, log=log)
    except (ConfigError, DataError, MergeError, EvalInputError, ModelStoreError, BackboneNotFound,
            FileNotFoundError) as err:
        typer.echo(f"error: {str(err).splitlines()[0]}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{result.candidate} {'promoted' if result.promoted else 'passed' if result.verdict['passed'] else 'refused'} "
               f"{result.report_dir / 'gate.json'}")
    if not result.verdict["passed"]:
        raise typer.Exit(GATE_REFUSED)


def register(app: typer.Typer) -> None:
    """Add `khabar retrain`."""
    app.command("retrain", help="Merge new labelled rows into a model's training data, fine-tune a candidate, "
                                "and promote it only if the evaluation gate passes.")(retrain_command)
