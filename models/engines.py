"""Inference engines for :class:`~khabar.models.predictor.Predictor`: fp32 PyTorch, or int8.

An engine is a callable ``(batch of padded tensors, tasks) -> {task: numpy logits}``; the
predictor does the windowing, batching and decoding, so every engine gives labels through the
same code. Pick one by name with :func:`make_engine`:

| name | what runs |
| --- | --- |
| ``fp32`` | the PyTorch model as trained (:class:`~khabar.models.predictor.TorchEngine`) |
| ``onnx-int8`` | ONNX Runtime on the model's int8 graph (:mod:`khabar.models.onnx_export`: exported with ``torch.onnx.export(dynamo=True)``, feed-forward inputs smoothed, ``quantize_dynamic``) |
| ``torch-int8`` | PyTorch dynamic quantization of the encoder's ``nn.Linear`` layers |
| ``int8`` | :data:`DEFAULT_INT8`, the int8 engine that stays closest to fp32 |

Without a name, :func:`make_engine` takes ``KHABAR_ENGINE`` from the process's settings
(:mod:`khabar.settings`, where every ``KHABAR_*`` variable is read); unset, the engine is :data:`DEFAULT_INT8`
when the ``onnx`` extra is installed (the README's "Measured results" compares its labels with
fp32's), else ``fp32``, which one log line says (:func:`default_engine`).

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

The int8 graph is stored in the model's store entry (``onnx/``), exported when the model is
saved or promoted; :meth:`OnnxEngine.for_model` runs it only after checking that it was exported
from these weights, and exports it again otherwise (:mod:`khabar.models.onnx_export`).
"""
from __future__ import annotations

import collections
import concurrent.futures
import copy
import functools
import logging
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from khabar.models.onnx_export import ONNX_PACKAGES, ensure_graph, missing_onnx_packages
from khabar.models.predictor import TorchEngine
from khabar.models.store import WEIGHTS
from khabar.settings import settings

log = logging.getLogger("khabar.engines")

ENGINE_NAMES = ("fp32", "int8", "onnx-int8", "torch-int8")
# ONNX Runtime's int8 (smoothed) stays much closer to fp32 than PyTorch's dynamic int8 in the
# bench's agreement columns (README, "Measured results"), so it is the int8 default.
DEFAULT_INT8 = "onnx-int8"


class EngineError(RuntimeError):
    """An engine cannot be built here; the message says what to do."""


def default_engine() -> str:
    """The engine when neither the caller nor KHABAR_ENGINE names one: :data:`DEFAULT_INT8` when
    the ``onnx`` extra is installed, else ``fp32`` (logged once per process)."""
    missing = missing_onnx_packages()
    if missing:
        _say_fp32_fallback(tuple(missing))
        return "fp32"
    return DEFAULT_INT8


@functools.cache
def _say_fp32_fallback(missing: tuple[str, ...]) -> None:
    log.warning("engine: fp32, because %s is not installed (pip install 'khabar[onnx]' for the int8 "
                "default; KHABAR_ENGINE=fp32 silences this)", ", ".join(missing))


def resolve_engine_name(name: str | None) -> str:
    """Normalise an engine name: ``None`` or empty -> KHABAR_ENGINE, else :func:`default_engine`;
    ``int8`` -> the measured default (:data:`DEFAULT_INT8`)."""
    name = (name or settings().engine or default_engine()).strip().lower()
    if name not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINE_NAMES)}")
    return DEFAULT_INT8 if name == "int8" else name


def make_engine(name: str | None, loaded, *, threads: int | None = None, streams: int | None = None,
                spin: bool | None = None, graph_dir: Path | None = None,
                progress: Callable[[str], None] | None = None) -> Callable:
    """Build the engine ``name`` for a :class:`~khabar.models.store.LoadedModel`.

    ``name=None`` reads KHABAR_ENGINE (default: :func:`default_engine`), so the service and batch
    jobs can pass ``make_engine(None, loaded)`` and be switched by the environment.

    ``threads`` caps the engine's threads (default: KHABAR_THREADS, else all cores);
    ``streams`` is how many batches an ONNX engine runs at once (default: KHABAR_ONNX_STREAMS, else 1);
    ``spin`` whether its threads spin between operators (default: KHABAR_ONNX_SPIN, else on);
    ``graph_dir`` keeps the int8 graph there instead of in the model's store entry (tests).
    """
    name = resolve_engine_name(name)
    if name == "fp32":
        return TorchEngine(loaded.model)
    if name == "torch-int8":
        return TorchInt8Engine(loaded.model)
    return OnnxEngine.for_model(loaded, threads=threads, streams=streams, spin=spin, graph_dir=graph_dir,
                                progress=progress)


def engine_threads(threads: int | None = None) -> int:
    """Threads an engine uses: the argument, else KHABAR_THREADS, else every core."""
    return threads or settings().threads


def engine_streams(streams: int | None = None) -> int:
    """Batches an ONNX engine runs at once: the argument, else KHABAR_ONNX_STREAMS, else 1."""
    n = settings().onnx_streams if streams is None else int(streams)
    if n < 1:  # KHABAR_ONNX_STREAMS itself is checked where it is read (khabar.settings)
        raise EngineError(f"the number of ONNX streams must be at least 1, got {n}")
    return n


def engine_spin(spin: bool | None = None) -> bool:
    """Whether ONNX Runtime threads spin while waiting: the argument, else KHABAR_ONNX_SPIN, else on."""
    return settings().onnx_spin if spin is None else bool(spin)


# -- PyTorch dynamic quantization -------------------------------------------------------------
class TorchInt8Engine(TorchEngine):
    """The model with its encoder's Linear layers (and NER's own top layers') quantized to int8
    (weights; activations per call).

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
            if getattr(quantized, "ner_layers", None) is not None:  # NER's own top layers
                quantized.ner_layers = torch.ao.quantization.quantize_dynamic(
                    quantized.ner_layers, {torch.nn.Linear}, dtype=torch.qint8)
        super().__init__(quantized)


# -- ONNX Runtime ------------------------------------------------------------------------------
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
    def for_model(cls, loaded, *, threads: int | None = None, streams: int | None = None,
                  spin: bool | None = None, graph_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> "OnnxEngine":
        """The engine for a loaded model: its stored int8 graph when that was exported from these
        weights, else a graph exported now (into ``graph_dir``, default the model's entry)."""
        try:
            path, manifest = ensure_graph(Path(loaded.path) / WEIGHTS, loaded.model, loaded.tokenizer,
                                          folder=graph_dir, progress=progress)
        except ImportError as err:
            if (err.name or "").partition(".")[0] not in ONNX_PACKAGES:
                raise  # another module is missing: say which, not that the onnx extra is
            raise EngineError(f"the onnx engines need onnx, onnxscript and onnxruntime "
                              f"(pip install 'khabar[onnx]'): {err}") from None
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
