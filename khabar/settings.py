"""Every ``KHABAR_*`` knob of a process, read from the environment once, in this one place.

:func:`settings` parses the variables on first use and hands the same frozen :class:`Settings` to
every later caller: the service (its limits, at import), the models layer (threads, the engine and
how an ONNX engine runs), batch jobs and training. ``khabar serve`` passes its options to the
BentoML worker processes through these variables, so a worker (a separate process started by
``bentoml serve``) sees the same values.

| variable | default | what it sets |
| --- | --- | --- |
| KHABAR_ENGINE | (see right) | numeric engine of the service and of batch jobs: ``fp32``, ``int8``, ``onnx-int8`` or ``torch-int8``; unset: ``int8`` where the ``onnx`` extra is installed, else ``fp32`` (:mod:`khabar.models.engines` checks the name) |
| KHABAR_ONNX_STREAMS | 1 | batches an ONNX engine runs at once, its threads split between them |
| KHABAR_ONNX_SPIN | 1 | ONNX Runtime threads spin between operators (faster); 0 lets them sleep, for cores other busy processes share |
| KHABAR_THREADS | (CPU cores) | torch threads of a process (a service worker, a batch job, a Ray actor, training, `khabar eval`); ONNX engines' threads; 0 or unset: every core |
| KHABAR_MODEL | khabar:promoted | model tag to serve; ``khabar:promoted`` follows promotions (see :mod:`khabar.serving.reload`) |
| KHABAR_RELOAD_POLL_S | 10 | seconds between checks for a newly promoted model (0: only ``POST /admin/reload``) |
| KHABAR_API_TOKEN | (unset) | when set, requests need ``Authorization: Bearer <token>`` |
| KHABAR_MAX_CHARS | 100000 | characters of one article |
| KHABAR_MAX_TARGETS | 16 | stance targets per article |
| KHABAR_MAX_TARGET_CHARS | 300 | characters of one target |
| KHABAR_MAX_BATCH_ITEMS | 256 | articles in one /label_batch call |
| KHABAR_MAX_BATCH_CHARS | 1000000 | characters in one /label_batch call, all articles together |
| KHABAR_MAX_BODY_BYTES | 4194304 | raw request body (bytes), checked before parsing |
| KHABAR_MAX_CONCURRENCY | 64 | labelling requests in flight per worker; more get 429 |
| KHABAR_WORKERS | 1 | service worker processes (each loads the model once) |
| KHABAR_API_THREADS | 1 | threads running the model in a service worker |
| KHABAR_BATCH_SIZE | 16 | windows per encoder pass in the service |
| KHABAR_MAX_BATCH_SIZE | 32 | articles grouped by adaptive batching |
| KHABAR_MAX_LATENCY_MS | 30000 | queueing time after which adaptive batching answers 503 |
| KHABAR_TIMEOUT_S | 300 | request timeout |

Read elsewhere, each for a reason:

- ``KHABAR_HOME``: where all state lives (:mod:`khabar.env`); read on every call, since tests and
  the bench's child processes point it elsewhere.
- ``KHABAR_DATA`` and ``KHABAR_SAMPLE``: not settings but placeholders a training config may use
  (``${KHABAR_DATA}``), expanded by :mod:`khabar.training.config`.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Mapping


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number: set it to e.g. {default}") from None
    if value < minimum:
        raise ValueError(f"{name}={value} is below {minimum}: set it to e.g. {default}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, got {raw!r}")


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """Runtime knobs and service limits (see the module docstring for the variables)."""

    threads: int = _cores()
    engine: str | None = None  # None: khabar.models.engines.default_engine() (needs the installed packages)
    onnx_streams: int = 1
    onnx_spin: bool = True
    model_tag: str = "khabar:promoted"
    api_token: str | None = None
    max_chars: int = 100_000
    max_targets: int = 16
    max_target_chars: int = 300
    max_batch_items: int = 256
    max_batch_chars: int = 1_000_000
    max_body_bytes: int = 4 * 1024 * 1024
    max_concurrency: int = 64
    workers: int = 1
    api_threads: int = 1
    batch_size: int = 16
    max_batch_size: int = 32
    max_latency_ms: int = 30_000
    timeout_s: int = 300
    reload_poll_s: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Parse every setting from ``env`` (default: ``os.environ``); defaults where unset.

        Raises ValueError naming the variable when a value is not a whole number or too small, or
        when a switch is not 1 or 0.
        """
        env = os.environ if env is None else env
        d = cls()
        return cls(
            threads=_int(env, "KHABAR_THREADS", 0, minimum=0) or _cores(),
            engine=env.get("KHABAR_ENGINE", "").strip().lower() or None,
            onnx_streams=_int(env, "KHABAR_ONNX_STREAMS", d.onnx_streams),
            onnx_spin=_flag(env, "KHABAR_ONNX_SPIN", d.onnx_spin),
            model_tag=env.get("KHABAR_MODEL", "").strip() or d.model_tag,
            api_token=env.get("KHABAR_API_TOKEN", "").strip() or None,
            max_chars=_int(env, "KHABAR_MAX_CHARS", d.max_chars),
            max_targets=_int(env, "KHABAR_MAX_TARGETS", d.max_targets),
            max_target_chars=_int(env, "KHABAR_MAX_TARGET_CHARS", d.max_target_chars),
            max_batch_items=_int(env, "KHABAR_MAX_BATCH_ITEMS", d.max_batch_items),
            max_batch_chars=_int(env, "KHABAR_MAX_BATCH_CHARS", d.max_batch_chars),
            max_body_bytes=_int(env, "KHABAR_MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
            max_concurrency=_int(env, "KHABAR_MAX_CONCURRENCY", d.max_concurrency),
            workers=_int(env, "KHABAR_WORKERS", d.workers),
            api_threads=_int(env, "KHABAR_API_THREADS", d.api_threads),
            batch_size=_int(env, "KHABAR_BATCH_SIZE", d.batch_size),
            max_batch_size=_int(env, "KHABAR_MAX_BATCH_SIZE", d.max_batch_size, minimum=2),
            max_latency_ms=_int(env, "KHABAR_MAX_LATENCY_MS", d.max_latency_ms),
            timeout_s=_int(env, "KHABAR_TIMEOUT_S", d.timeout_s),
            reload_poll_s=_int(env, "KHABAR_RELOAD_POLL_S", d.reload_poll_s, minimum=0),
        )

    def limits(self) -> dict:
        """The limits a client must respect (reported by GET /info; no secrets)."""
        keys = ("max_chars", "max_targets", "max_target_chars", "max_batch_items",
                "max_batch_chars", "max_body_bytes", "max_concurrency", "timeout_s")
        return {k: v for k, v in asdict(self).items() if k in keys}


@functools.cache
def settings() -> Settings:
    """This process's settings, read from the environment on the first call.

    Code that changes ``KHABAR_*`` variables afterwards in the same process (a test fixture) calls
    ``settings.cache_clear()`` so that the next call reads them again.
    """
    return Settings.from_env()


def use_torch_threads(threads: int | None = None) -> int:
    """Set this process's torch thread count to ``threads``, else KHABAR_THREADS, else every core.

    torch's thread count is global to a process, so only the process's owner sets it, once, as it
    starts: a service worker, a batch job's local engine, a Ray actor, the training loop, and the
    commands that run a model in-process. Predictors and engines never change it. Returns the count.
    """
    import torch

    n = threads or settings().threads
    torch.set_num_threads(n)
    return n
