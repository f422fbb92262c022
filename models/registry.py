"""Stages of stored models: which one is promoted (served), and the promotion history.

The stage lives in the model store itself (``BENTOML_HOME/khabar-stages.json``), replaced in one
``os.replace`` so a promotion is a single atomic step and a crash leaves the old or the new state,
never a mix. The service reads the promoted tag; retraining promotes only through its gate.
A model is given its int8 ONNX graph (the service's default engine) when it is promoted, if it has
none for its weights yet, so the service switches to it without waiting for an export.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from khabar.models.store import MODEL_NAME, WEIGHTS, ModelStoreError, model_path

log = logging.getLogger("khabar.registry")


def _stages_file() -> Path:
    import bentoml  # noqa: F401  (BENTOML_HOME is resolved by khabar.env before this)

    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    home.mkdir(parents=True, exist_ok=True)
    return home / "khabar-stages.json"


def read_stages() -> dict:
    """``{"promoted": tag | None, "history": [{"tag", "at", "reason"}...], "gates": {tag: verdict}}``."""
    path = _stages_file()
    if not path.exists():
        return {"promoted": None, "history": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelStoreError(f"{path} is damaged ({err}); fix or delete it and promote again") from err


def _write_stages(stages: dict) -> None:
    from khabar.models.files import write_text_atomic

    write_text_atomic(_stages_file(), json.dumps(stages, indent=2, sort_keys=True))


def promoted_tag() -> str | None:
    """The promoted model's tag, or None when nothing was promoted yet."""
    return read_stages().get("promoted")


def serving_tag(explicit: str | None = None) -> str:
    """What a service or job should load: an explicit tag, else the promoted one, else the newest."""
    if explicit and explicit != f"{MODEL_NAME}:promoted":
        return model_path(explicit)[0]
    tag = promoted_tag()
    if tag:
        return tag
    return model_path(f"{MODEL_NAME}:latest")[0]


def promote(tag: str, reason: str = "manual") -> str:
    """Make ``tag`` the promoted model (it must exist and hold weights), exporting its int8 graph
    first when it lacks one (promoting the promoted model again does only that)."""
    full, path = model_path(tag)
    if not (path / WEIGHTS).exists():
        raise ModelStoreError(f"{full} has no weights; refusing to promote it")
    _ensure_graph(full, path)
    stages = read_stages()
    if stages.get("promoted") == full:
        return full
    stages["history"].append({"tag": full, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "reason": reason})
    stages["promoted"] = full
    _write_stages(stages)
    return full


def rollback() -> str:
    """Promote again the model promoted before the current one; returns its tag."""
    stages = read_stages()
    current = stages.get("promoted")
    earlier = [h["tag"] for h in stages["history"] if h["tag"] != current]
    if not earlier:
        raise ModelStoreError("nothing to roll back to: no earlier promoted model")
    target = earlier[-1]
    _ensure_graph(*model_path(target))  # still in the store? (and ready for the int8 engine)
    stages["history"].append({"tag": target, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "reason": f"rollback from {current}"})
    stages["promoted"] = target
    _write_stages(stages)
    return target


def _ensure_graph(full: str, path: Path) -> None:
    """Export the int8 graph of stored model ``full`` unless it holds one of its weights already
    (or the ``onnx`` extra is not installed).

    A failed export does not stop the promotion: promoting is the operator's decision, and a
    model that cannot be loaded is refused where it matters -- the serving reload keeps the live
    model and says why in ``/info`` -- while a transient export failure is retried by the int8
    engine when it first loads the model."""
    from khabar.models.onnx_export import missing_onnx_packages
    from khabar.models.store import has_current_graph, load_model, store_graph

    if missing_onnx_packages() or has_current_graph(path):
        return
    log.warning("%s has no int8 ONNX graph of its weights: exporting it now (once per model)", full)
    try:
        loaded = load_model(full)
        store_graph(loaded.model, loaded.tokenizer, path)
    except Exception as err:  # noqa: BLE001 - see the docstring
        log.warning("%s: int8 graph not exported (%s: %s); the int8 engine exports it when it first "
                    "loads the model", full, type(err).__name__, err)


def record_gate(tag: str, verdict: dict, report: str | None = None) -> None:
    """Keep a retraining gate's verdict on ``tag`` in the stages file (``gates[tag]``).

    Kept apart from ``history`` on purpose: history lists promotions, and rollback walks it.
    """
    full, _ = model_path(tag)
    stages = read_stages()
    stages.setdefault("gates", {})[full] = {
        "passed": bool(verdict.get("passed")), "base": verdict.get("base"), "report": report,
        "reasons": verdict.get("reasons", []), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_stages(stages)


def list_models() -> list[dict]:
    """Every stored khabar model, newest first, with stage, tasks and key dev metrics."""
    import bentoml

    stages = read_stages()
    promoted = stages.get("promoted")
    ever = {h["tag"] for h in stages["history"]}
    refused = {t for t, g in stages.get("gates", {}).items() if not g.get("passed")}
    rows = []
    for ref in bentoml.models.list(MODEL_NAME):
        tag = str(ref.tag)
        info = ref.info
        stage = "promoted" if tag == promoted else ("retired" if tag in ever else "refused" if tag in refused
                                                    else info.labels.get("stage", "candidate"))
        rows.append({"tag": tag, "stage": stage, "created": info.creation_time.strftime("%Y-%m-%d %H:%M"),
                     "tasks": info.metadata.get("tasks", []),
                     "metrics": info.metadata.get("dev_metrics", {})})
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows
