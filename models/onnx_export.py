"""The int8 ONNX graph of a stored model: exported with the model, checked before it is run.

A model's graph lives in its store entry, ``<entry>/onnx/``: ``model.int8.onnx`` and
``manifest.json``. The manifest records the sha256 of the weights the graph was exported from and
of the graph file itself; a graph from other weights, or edited since, is never run: it is
exported again (:func:`ensure_graph`). :func:`khabar.models.store.save_model` and
:func:`khabar.models.registry.promote` call it, so a service that loads a trained or promoted
model finds the graph ready and no request waits for an export.

The recipe: every head of the model in one graph (``torch.onnx.export(dynamo=True)``, batch and
sequence axes dynamic), the feed-forward inputs smoothed first (:mod:`khabar.models.smoothing`),
then ``quantize_dynamic``: int8 weights of the encoder's matmuls, activations quantized per call.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from khabar.models.files import sha256_file

# Bump when the export recipe changes, so graphs exported by an older recipe are rebuilt.
EXPORT_VERSION = 3  # 3: feed-forward inputs smoothed before int8 (models/smoothing.py)
HEAD_ORDER = ("topic", "stance", "ner")
GRAPH_DIR = "onnx"  # inside the model's store entry
INT8_GRAPH = "model.int8.onnx"
FP32_GRAPH = "model.onnx"  # the graph before quantizing; kept only when asked (tests compare it)
MANIFEST = "manifest.json"
# The import names of the `onnx` extra (pyproject.toml); the export needs all three.
ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")


def missing_onnx_packages() -> list[str]:
    """The packages of the ``onnx`` extra that are not installed (empty when all are)."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def graph_manifest(folder: Path, weights_sha256: str) -> dict | None:
    """The manifest of ``folder`` when its int8 graph may be run for these weights, else None:
    same export recipe, exported from weights with this sha256, graph bytes unchanged since."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        graph_sha = sha256_file(Path(folder) / INT8_GRAPH)
    except (OSError, ValueError):
        return None
    if (manifest.get("export_version") != EXPORT_VERSION or manifest.get("weights_sha256") != weights_sha256
            or manifest.get("graph_sha256") != graph_sha):
        return None
    return manifest


def ensure_graph(weights: Path, model: torch.nn.Module, tokenizer=None, *, folder: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """The int8 graph of ``model``, whose weights file is ``weights``: ``(graph path, manifest)``.

    The graph in ``folder`` (default: ``onnx/`` beside the weights) is reused when
    :func:`graph_manifest` accepts it, else exported there. Several processes may ask at once
    (service workers starting together): one exports, the others wait and reuse its files.
    """
    folder = Path(folder) if folder is not None else Path(weights).parent / GRAPH_DIR
    weights_sha = sha256_file(weights)
    manifest = graph_manifest(folder, weights_sha)
    if manifest is None:
        with _folder_lock(folder.parent):
            manifest = graph_manifest(folder, weights_sha)
            if manifest is None:
                manifest = export_onnx(model, folder, tokenizer=tokenizer, weights_sha256=weights_sha,
                                       progress=progress)
    return folder / INT8_GRAPH, manifest


class _AllHeads(torch.nn.Module):
    """Export wrapper: fixed inputs, the logits of every head the model has, in HEAD_ORDER.

    Computing all heads for every batch costs next to nothing (they are single Linear layers) and
    keeps one graph per model instead of one per task set.
    """

    def __init__(self, model: torch.nn.Module, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.tasks = tasks

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids, tasks=self.tasks)
        return tuple(out[t] for t in self.tasks)


def export_onnx(model: torch.nn.Module, out_dir: Path, *, tokenizer=None, weights_sha256: str | None = None,
                keep_fp32: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Export ``model`` (a KhabarModel) to ``out_dir/model.int8.onnx`` (and ``model.onnx``, the
    graph before quantizing, with ``keep_fp32``).

    With ``tokenizer``, the feed-forward inputs are smoothed first (:mod:`khabar.models.smoothing`):
    the same function, with int8 labels much closer to fp32. ``weights_sha256`` is recorded in the
    manifest, which ties the graph to those weights (:func:`graph_manifest`).

    Files are written in a temporary folder next to ``out_dir`` and moved into place at the end,
    so a killed export leaves no half-written graph. Returns the manifest written as
    ``out_dir/manifest.json``.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    say = progress or (lambda m: None)
    started = time.monotonic()
    tasks = tuple(t for t in HEAD_ORDER if t in model.schema.tasks)
    max_length = model.schema.max_length
    # Eager attention exports as MatMul/Softmax; the SDPA path adds IsNaN/Where masking ops that
    # slow an int8 run in ONNX Runtime for the same numbers (checked by the tests).
    model = copy.deepcopy(model).eval()
    if hasattr(model.encoder, "set_attn_implementation"):
        model.encoder.set_attn_implementation("eager")
    smoothed, calibration = 0, None
    if tokenizer is not None:
        from khabar.models.smoothing import calibration_texts, smooth_encoder, text_calibration

        texts, calibration = calibration_texts()
        say(f"smoothing feed-forward inputs for int8 (SmoothQuant; calibration: {calibration})")
    wrapper = _AllHeads(model, tasks).eval()
    if tokenizer is not None:
        # Through the wrapper, so the forward pass reaches every layer the graph holds: NER's own
        # top layers (schema.ner_own_layers) are smoothed too, not only the shared encoder's.
        smoothed = smooth_encoder(wrapper, text_calibration(
            tokenizer, texts, max_length=max_length, stride=model.schema.stride))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        # Batch 2 and 16 tokens: size-1 axes would be specialised away by torch.export.
        example = {
            "input_ids": torch.full((2, 16), 5, dtype=torch.long),
            "attention_mask": torch.ones((2, 16), dtype=torch.long),
            "token_type_ids": torch.zeros((2, 16), dtype=torch.long),
        }
        batch = torch.export.Dim("batch", min=1, max=4096)
        seq = torch.export.Dim("seq", min=2, max=max(max_length, 17))
        dyn = {k: {0: batch, 1: seq} for k in example}
        say("exporting the model to ONNX (torch.onnx.export, dynamo=True)")
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export internals
            warnings.simplefilter("ignore", UserWarning)  # "axis name batch will not be used"
            program = torch.onnx.export(wrapper, (), kwargs=example, dynamic_shapes=dyn, dynamo=True,
                                        input_names=list(example), output_names=list(tasks), verbose=False)
        program.save(str(tmp / FP32_GRAPH), external_data=False)
        say("quantizing to int8 (onnxruntime quantize_dynamic, QInt8 weights)")
        # Per-channel 7-bit weights: on AVX2 CPUs without VNNI the u8 x s8 products can saturate
        # at 8 bits; reduce_range avoids it (same speed, labels much closer to fp32 here).
        with _quiet_root_logger():  # it advises a shape-inference pass that fails on this graph
            quantize_dynamic(tmp / FP32_GRAPH, tmp / INT8_GRAPH, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, reduce_range=True,
                             nodes_to_quantize=encoder_matmuls(tmp / FP32_GRAPH,
                                                               model.encoder.config.hidden_size))
        if not keep_fp32:  # served models run the int8 graph only; the fp32 one would double the entry
            (tmp / FP32_GRAPH).unlink()
        manifest = {"export_version": EXPORT_VERSION, "tasks": list(tasks), "inputs": list(example),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "max_length": max_length, "smoothed_linears": smoothed, "calibration": calibration,
                    "weights_sha256": weights_sha256, "graph_sha256": sha256_file(tmp / INT8_GRAPH)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        say(f"int8 graph written in {time.monotonic() - started:.0f} s")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def encoder_matmuls(path: Path, hidden: int) -> list[str]:
    """Names of the MatMul/Gemm nodes with an encoder weight (both sides >= hidden size).

    The heads (one side = the number of labels) stay fp32, as in the PyTorch int8 engine.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    names = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        weights = [shapes[i] for i in node.input[1:2] if i in shapes]
        if weights and len(weights[0]) == 2 and min(weights[0]) >= hidden:
            names.append(node.name)
    return names


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive POSIX ``flock`` on ``folder`` itself (released if the process dies); locking
    the folder, not a file in it, leaves nothing behind in a model's store entry."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
