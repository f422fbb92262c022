"""Inference engines for :class:`~khabar.models.predictor.Predictor`: fp32 PyTorch, or int8.

An engine is a callable ``(batch of padded tensors, tasks) -> {task: numpy logits}``; the
predictor does the windowing, batching and decoding, so every engine gives labels through the
same code. Pick one by name with :func:`make_engine`:

| name | what runs |
| --- | --- |
| ``fp32`` | the PyTorch model as trained (:class:`~khabar.models.predictor.TorchEngine`) |
| ``onnx-int8`` | ONNX Runtime on a graph exported with ``torch.onnx.export(dynamo=True)``, its feed-forward inputs smoothed (:mod:`khabar.models.smoothing`), and quantized with ``quantize_dynamic`` (int8 weights, activations quantized per call) |
| ``torch-int8`` | PyTorch dynamic quantization of the encoder's ``nn.Linear`` layers |
| ``int8`` | :data:`DEFAULT_INT8`, the int8 engine that stays closest to fp32 |

Without a name, :func:`make_engine` reads ``KHABAR_ENGINE`` (default ``fp32``).

The ONNX engines can run several batches at once (``streams``, default ``KHABAR_ONNX_STREAMS``):
the engine's threads are split between streams, each ``session.run`` on its own Python thread
(ONNX Runtime releases the GIL, and one session may be run from several threads). At hidden size
384 one GEMM is too small to keep two cores busy, so two single-threaded batches side by side might
beat one two-threaded batch; the predictor dispatches batches through :meth:`OnnxEngine.map`.
The default is 1 stream; `make bench` (benchmarks/) measures both on the machine at hand (row
``onnx-int8-streams``; README, "Measured results").

ONNX Runtime's worker threads spin while they wait for the next parallel section unless told not
to (``spin``, default ``KHABAR_ONNX_SPIN``, on). Between the many small operators of each layer,
a sleeping thread pays a wake-up each time (the README gives the measured difference).
``KHABAR_ONNX_SPIN=0`` gives the cores back between
operators, for machines where other busy processes share them.

The ONNX files are cached per model tag under ``KHABAR_HOME/cache/onnx/<name>-<version>/``
(never inside the model store, whose folders are content of the artifact), so exporting and
quantizing happen once per model.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from khabar.env import khabar_home
from khabar.models.predictor import TorchEngine

ENGINE_NAMES = ("fp32", "int8", "onnx-int8", "torch-int8")
# ONNX Runtime's int8 (smoothed) stays much closer to fp32 than PyTorch's dynamic int8 in the
# bench's agreement columns (README, "Measured results"), so it is the int8 default.
DEFAULT_INT8 = "onnx-int8"
# Bump when the export recipe changes, so stale cached graphs are rebuilt.
EXPORT_VERSION = 3  # 3: feed-forward inputs smoothed before int8 (models/smoothing.py)
HEAD_ORDER = ("topic", "stance", "ner")


class EngineError(RuntimeError):
    """An engine cannot be built here; the message says what to do."""


def resolve_engine_name(name: str | None) -> str:
    """Normalise an engine name: ``None`` or empty -> KHABAR_ENGINE, else ``fp32``; ``int8`` -> the
    measured default (:data:`DEFAULT_INT8`)."""
    name = (name or os.environ.get("KHABAR_ENGINE", "") or "fp32").strip().lower()
    if name not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINE_NAMES)}")
    return DEFAULT_INT8 if name == "int8" else name


def make_engine(name: str | None, loaded, *, threads: int | None = None, streams: int | None = None,
                spin: bool | None = None, cache_dir: Path | None = None,
                progress: Callable[[str], None] | None = None) -> Callable:
    """Build the engine ``name`` for a :class:`~khabar.models.store.LoadedModel`.

    ``name=None`` reads KHABAR_ENGINE (default ``fp32``), so the service and batch jobs can pass
    ``make_engine(None, loaded)`` and be switched by the environment.

    ``threads`` caps the engine's threads (default: KHABAR_THREADS, else all cores);
    ``streams`` is how many batches an ONNX engine runs at once (default: KHABAR_ONNX_STREAMS, else 1);
    ``spin`` whether its threads spin between operators (default: KHABAR_ONNX_SPIN, else on);
    ``cache_dir`` overrides where ONNX files are kept (tests).
    """
    name = resolve_engine_name(name)
    if name == "fp32":
        return TorchEngine(loaded.model)
    if name == "torch-int8":
        return TorchInt8Engine(loaded.model)
    return OnnxEngine.for_model(loaded, threads=threads, streams=streams, spin=spin, cache_dir=cache_dir,
                                progress=progress)


def engine_threads(threads: int | None = None) -> int:
    """Threads an engine uses: the argument, else KHABAR_THREADS, else every core."""
    return threads or int(os.environ.get("KHABAR_THREADS", "0")) or os.cpu_count() or 1


def engine_streams(streams: int | None = None) -> int:
    """Batches an ONNX engine runs at once: the argument, else KHABAR_ONNX_STREAMS, else 1."""
    value = streams if streams is not None else os.environ.get("KHABAR_ONNX_STREAMS", "1")
    try:
        n = int(value)
    except ValueError:
        raise EngineError(f"KHABAR_ONNX_STREAMS must be a whole number, got {value!r}") from None
    if n < 1:
        raise EngineError(f"the number of ONNX streams must be at least 1, got {n}")
    return n


def engine_spin(spin: bool | None = None) -> bool:
    """Whether ONNX Runtime threads spin while waiting: the argument, else KHABAR_ONNX_SPIN, else on."""
    if spin is not None:
        return bool(spin)
    value = os.environ.get("KHABAR_ONNX_SPIN", "1").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise EngineError(f"KHABAR_ONNX_SPIN must be 1 or 0, got {value!r}")


# -- PyTorch dynamic quantization -------------------------------------------------------------
class TorchInt8Engine(TorchEngine):
    """The model with its encoder's Linear layers quantized to int8 (weights; activations per call).

    The heads stay fp32: they are a sliver of the compute and carry the decision boundaries.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        quantized = copy.deepcopy(model).eval()
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, yet still the only dynamic
            # int8 path in torch itself; the ONNX engine is the default int8 path anyway.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            quantized.encoder = torch.ao.quantization.quantize_dynamic(
                quantized.encoder, {torch.nn.Linear}, dtype=torch.qint8)
        super().__init__(quantized)


# -- ONNX Runtime ------------------------------------------------------------------------------
class _AllHeads(torch.nn.Module):
    """Export wrapper: fixed inputs, the logits of every head the model has, in HEAD_ORDER.

    Computing all heads for every batch costs next to nothing (they are single Linear layers) and
    keeps one graph per model instead of one per task set.
    """

    def __init__(self, model: torch.nn.Module, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.tasks = tasks

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids, tasks=self.tasks)
        return tuple(out[t] for t in self.tasks)


def onnx_cache_dir(tag: str) -> Path:
    """Where the ONNX files of model ``tag`` are cached: KHABAR_HOME/cache/onnx/<name>-<version>."""
    return khabar_home() / "cache" / "onnx" / tag.replace(":", "-").replace("/", "_")


def export_onnx(model: torch.nn.Module, out_dir: Path, *, max_length: int, tokenizer=None,
                progress: Callable[[str], None] | None = None) -> dict:
    """Export ``model`` (a KhabarModel) to ``out_dir/model.onnx`` and ``model.int8.onnx``.

    With ``tokenizer``, the feed-forward inputs are smoothed first (:mod:`khabar.models.smoothing`):
    the same function, with int8 labels much closer to fp32. Both files hold the smoothed graph.

    Batch and sequence axes are dynamic. Files are written in a temporary folder next to
    ``out_dir`` and moved into place at the end, so a killed export leaves no half-written cache.
    Returns the manifest written as ``out_dir/manifest.json``.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    say = progress or (lambda m: None)
    tasks = tuple(t for t in HEAD_ORDER if t in model.schema.tasks)
    # Eager attention exports as MatMul/Softmax; the SDPA path adds IsNaN/Where masking ops that
    # cost ~14% of an int8 run in ONNX Runtime. Same numbers (checked by the tests).
    model = copy.deepcopy(model).eval()
    if hasattr(model.encoder, "set_attn_implementation"):
        model.encoder.set_attn_implementation("eager")
    smoothed, calibration = 0, None
    if tokenizer is not None:
        from khabar.models.smoothing import calibration_texts, smooth_encoder, text_calibration

        texts, calibration = calibration_texts()
        say(f"smoothing feed-forward inputs for int8 (SmoothQuant; calibration: {calibration})")
        smoothed = smooth_encoder(model.encoder, text_calibration(
            tokenizer, texts, max_length=max_length, stride=model.schema.stride))
    wrapper = _AllHeads(model, tasks).eval()
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
        program.save(str(tmp / "model.onnx"), external_data=False)
        say("quantizing to int8 (onnxruntime quantize_dynamic, QInt8 weights)")
        # Per-channel 7-bit weights: on AVX2 CPUs without VNNI the u8 x s8 products can saturate
        # at 8 bits; reduce_range avoids it (same speed, labels much closer to fp32 here).
        with _quiet_root_logger():  # it advises a shape-inference pass that fails on this graph
            quantize_dynamic(tmp / "model.onnx", tmp / "model.int8.onnx", weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, reduce_range=True,
                             nodes_to_quantize=encoder_matmuls(tmp / "model.onnx",
                                                               model.encoder.config.hidden_size))
        manifest = {"export_version": EXPORT_VERSION, "tasks": list(tasks), "inputs": list(example),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "max_length": max_length, "smoothed_linears": smoothed, "calibration": calibration}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
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

    The heads (one side = the number of labels) stay fp32, as in :class:`TorchInt8Engine`.
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
def _export_lock(folder: Path):
    """An exclusive lock beside ``folder`` (POSIX ``flock``; released if the process dies)."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached_manifest(folder: Path) -> dict | None:
    """The manifest of a complete, current cache folder, else None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("export_version") != EXPORT_VERSION or not (folder / "model.int8.onnx").exists():
        return None
    return manifest


class OnnxEngine:
    """ONNX Runtime session over an exported graph (int8 by default)."""

    def __init__(self, path: Path, tasks: list[str], *, threads: int | None = None,
                 streams: int | None = None, spin: bool | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineError("the onnx engines need onnxruntime: pip install 'khabar[onnx]'") from None
        total = engine_threads(threads)
        # More streams than threads would only queue; each stream gets an equal share of threads.
        self.streams = min(engine_streams(streams), total)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, total // self.streams)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning saves a thread wake-up per operator (see the module docstring).
        self.spin = engine_spin(spin)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.tasks = list(tasks)
        self.path = Path(path)
        self._pool = None
        self._pool_lock = threading.Lock()

    @classmethod
    def for_model(cls, loaded, *, int8: bool = True, threads: int | None = None, streams: int | None = None,
                  spin: bool | None = None, cache_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> "OnnxEngine":
        """The engine for a loaded model, exporting (once) into the ONNX cache when needed."""
        folder = Path(cache_dir) if cache_dir else onnx_cache_dir(loaded.tag)
        manifest = _cached_manifest(folder)
        if manifest is None:
            # Several service workers may start at once: one exports, the others wait and reuse.
            with _export_lock(folder):
                manifest = _cached_manifest(folder)
                if manifest is None:
                    try:
                        manifest = export_onnx(loaded.model, folder, max_length=loaded.schema.max_length,
                                               tokenizer=loaded.tokenizer, progress=progress)
                    except ImportError as err:
                        raise EngineError(f"the onnx engines need onnx, onnxscript and onnxruntime "
                                          f"(pip install 'khabar[onnx]'): {err}") from None
        path = folder / ("model.int8.onnx" if int8 else "model.onnx")
        return cls(path, manifest["tasks"], threads=threads, streams=streams, spin=spin)

    def map(self, batches: Iterable[dict[str, torch.Tensor]], tasks: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
        """Outputs of ``batches`` in their order, up to ``self.streams`` of them running at once."""
        if self.streams == 1:
            for batch in batches:
                yield self(batch, tasks)
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.streams, thread_name_prefix="onnx")
        # At most `streams` batches in flight: the padded inputs of a long job never pile up.
        pending: collections.deque = collections.deque()
        for batch in batches:
            pending.append(self._pool.submit(self, batch, tasks))
            if len(pending) >= self.streams:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def __call__(self, batch: dict[str, torch.Tensor], tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        ids = batch["input_ids"].numpy()
        feed = {
            "input_ids": ids,
            "attention_mask": batch["attention_mask"].numpy(),
            "token_type_ids": (batch["token_type_ids"].numpy() if "token_type_ids" in batch
                               else np.zeros_like(ids)),
        }
        wanted = [t for t in tasks if t in self.tasks]
        missing = set(tasks) - set(wanted)
        if missing:
            raise KeyError(f"this model has no {sorted(missing)} head (it has {self.tasks})")
        outs = self.session.run(wanted, feed)
        return dict(zip(wanted, outs))
