"""Saving and loading khabar models in the BentoML model store.

An artifact is one folder in ``BENTOML_HOME/models/khabar/<version>``:
``model.safetensors`` (encoder + heads; never pickle), ``encoder/config.json``, ``tokenizer/``,
``schema.json`` (tasks, labels, windowing), ``training.json`` (config, data fingerprints, dev
metrics, backbone identity, code version), and ``onnx/``: the int8 graph the service runs by
default, exported at save time when the ``onnx`` extra is installed (:mod:`khabar.models.onnx_export`).
Everything else in khabar loads models through here.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from khabar.models.hybrid import HybridError, load_hybrid, save_hybrid
from khabar.models.multitask import KhabarModel
from khabar.models.schema import ModelSchema

MODEL_NAME = "khabar"
WEIGHTS = "model.safetensors"
log = logging.getLogger("khabar.store")


class ModelStoreError(RuntimeError):
    """A model cannot be found or loaded; the message says which and why."""


@dataclass
class LoadedModel:
    """A model ready for prediction, with what was recorded at training time."""

    tag: str
    model: KhabarModel
    tokenizer: object
    schema: ModelSchema
    training: dict
    path: Path
    hybrid: dict = field(default_factory=dict)

    @property
    def info(self) -> dict:
        """Name and version as the API reports them."""
        name, _, version = self.tag.partition(":")
        return {"name": name, "version": version}


def save_model(model: KhabarModel, tokenizer, *, training: dict, labels: dict | None = None,
               name: str = MODEL_NAME, extra_files: list[Path] = (), hybrid: dict | None = None) -> str:
    """Write a model into the store; returns its tag (``khabar:<version>``).

    ``extra_files`` (training log, curves) are copied beside the weights when they exist;
    ``hybrid`` (task -> HybridHead) is written under ``hybrid/`` (models/hybrid.py); the int8 ONNX
    graph under ``onnx/`` (:func:`store_graph`), so no service or job waits for its export.
    """
    import shutil

    import bentoml
    from safetensors.torch import save_file

    metadata = {
        "tasks": sorted(model.schema.tasks),
        "backbone": model.schema.backbone.get("name", ""),
        "dev_metrics": _flat_metrics(training.get("dev_metrics", {})),
    }
    with bentoml.models.create(name, labels=labels or {}, metadata=metadata, module="khabar") as ref:
        path = Path(ref.path)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(path / WEIGHTS))
        model.encoder.config.save_pretrained(path / "encoder")
        tokenizer.save_pretrained(path / "tokenizer")
        (path / "schema.json").write_text(model.schema.to_json(), encoding="utf-8")
        (path / "training.json").write_text(
            json.dumps(training, ensure_ascii=False, indent=2, sort_keys=True, default=str), encoding="utf-8")
        for extra in extra_files:
            if Path(extra).exists():
                shutil.copy2(extra, path / Path(extra).name)
        if hybrid:
            save_hybrid(hybrid, path)
        store_graph(model, tokenizer, path)
        tag = str(ref.tag)
    return tag


def store_graph(model: KhabarModel, tokenizer, path: Path) -> bool:
    """Export the int8 ONNX graph of the model stored in ``path`` into ``path/onnx`` unless a graph
    of these weights is there already; returns whether a current graph is there now.

    Without the ``onnx`` extra nothing is exported (the default engine is then fp32). A failed
    export is logged and the model stays usable: the int8 engine exports when it first loads it.
    """
    from khabar.models.onnx_export import ensure_graph, missing_onnx_packages

    if missing_onnx_packages():
        return False
    try:
        ensure_graph(Path(path) / WEIGHTS, model, tokenizer, progress=log.info)
    except Exception as err:  # noqa: BLE001 - an optional artifact must never cost the model itself
        log.warning("%s has no int8 ONNX graph (%s: %s); the int8 engine will export it when it first "
                    "loads the model", path, type(err).__name__, err)
        return False
    return True


def has_current_graph(path: Path) -> bool:
    """Whether the model stored in ``path`` holds an int8 graph exported from its weights."""
    from khabar.models.files import sha256_file
    from khabar.models.onnx_export import GRAPH_DIR, graph_manifest

    return graph_manifest(Path(path) / GRAPH_DIR, sha256_file(Path(path) / WEIGHTS)) is not None


def model_path(tag: str = f"{MODEL_NAME}:latest") -> tuple[str, Path]:
    """Resolve a tag to (full tag, folder) without loading weights."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        ref = bentoml.models.get(tag)
    except NotFound as err:
        raise ModelStoreError(f"no model {tag!r} in the store: train one with `khabar train`") from err
    except Exception as err:  # a corrupt model.yaml, a bad tag
        raise ModelStoreError(f"cannot read model {tag!r} from the store: {err}") from err
    return str(ref.tag), Path(ref.path)


def load_model(tag: str = f"{MODEL_NAME}:latest") -> LoadedModel:
    """Load a model from the store (safetensors only)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    full, path = model_path(tag)
    weights = path / WEIGHTS
    if not weights.exists():
        pickles = [p.name for p in path.glob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
        hint = f" (found {pickles}: khabar refuses pickle checkpoints)" if pickles else ""
        raise ModelStoreError(f"model {full} has no {WEIGHTS}{hint}")
    try:
        schema = ModelSchema.from_json((path / "schema.json").read_text(encoding="utf-8"))
        training = json.loads((path / "training.json").read_text(encoding="utf-8"))
        if schema.stance_windows is None and "stance" in schema.tasks:
            # Models saved before the schema carried it: what their training read.
            trained = (training.get("config") or {}).get("max_windows_per_example")
            if isinstance(trained, int) and trained >= 1:
                schema.stance_windows = trained
        config = AutoConfig.from_pretrained(path / "encoder")
        encoder = AutoModel.from_config(config, **_pooler_kwargs(config))
        model = KhabarModel(encoder, schema)
        state = load_file(str(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelStoreError(f"model {full}: weights do not match its schema "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
        hybrid = load_hybrid(path)
    except HybridError as err:
        raise ModelStoreError(f"model {full}: its hybrid heads cannot be used: {err}") from err
    except ModelStoreError:
        raise
    except Exception as err:
        raise ModelStoreError(f"model {full} is damaged or incomplete: {err}") from err
    return LoadedModel(tag=full, model=model.eval(), tokenizer=tokenizer, schema=schema,
                       training=training, path=path, hybrid=hybrid)


def _pooler_kwargs(config) -> dict:
    # khabar pools itself; BERT-like encoders would otherwise create an unused pooler.
    return {"add_pooling_layer": False} if config.model_type in {"bert", "roberta", "xlm-roberta"} else {}


def _flat_metrics(metrics: dict, prefix: str = "") -> dict:
    """BentoML metadata must be flat-ish; keep the numbers that a model list shows."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, name + "."))
        elif isinstance(value, (int, float)):
            flat[name] = float(value)
    return flat


