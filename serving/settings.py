"""The service's settings: read once from environment variables, with defaults.

``khabar serve`` passes its options to the BentoML worker processes through these variables, so
that the worker (a separate process started by ``bentoml serve``) sees the same values.

| variable | default | what it sets |
| --- | --- | --- |
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
| KHABAR_WORKERS | 1 | worker processes (each loads the model once) |
| KHABAR_API_THREADS | 1 | threads running the model in a worker |
| KHABAR_THREADS | (CPU cores) | torch threads per worker (read by the predictor) |
| KHABAR_ENGINE | fp32 | ``fp32``, ``int8`` (the measured faster int8 path), ``onnx-int8`` or ``torch-int8``; batch jobs read it too |
| KHABAR_ONNX_STREAMS | 1 | batches an ONNX engine runs at once, threads split between them (:mod:`khabar.models.engines`) |
| KHABAR_ONNX_SPIN | 1 | ONNX Runtime threads spin between operators (faster); 0 lets them sleep, for shared cores |
| KHABAR_BATCH_SIZE | 16 | windows per encoder pass |
| KHABAR_MAX_BATCH_SIZE | 32 | articles grouped by adaptive batching |
| KHABAR_MAX_LATENCY_MS | 30000 | queueing time after which adaptive batching answers 503 |
| KHABAR_TIMEOUT_S | 300 | request timeout |
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number: set it to e.g. {default}") from None
    if value < minimum:
        raise ValueError(f"{name}={value} is below {minimum}: set it to e.g. {default}")
    return value


@dataclass(frozen=True)
class Settings:
    """Limits and runtime knobs of the service (see the module docstring for the variables)."""

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
    def from_env(cls) -> "Settings":
        """Read every setting from the environment (defaults where unset)."""
        d = cls()
        token = os.environ.get("KHABAR_API_TOKEN", "").strip() or None
        return cls(
            model_tag=os.environ.get("KHABAR_MODEL", "").strip() or d.model_tag,
            api_token=token,
            max_chars=_int("KHABAR_MAX_CHARS", d.max_chars),
            max_targets=_int("KHABAR_MAX_TARGETS", d.max_targets),
            max_target_chars=_int("KHABAR_MAX_TARGET_CHARS", d.max_target_chars),
            max_batch_items=_int("KHABAR_MAX_BATCH_ITEMS", d.max_batch_items),
            max_batch_chars=_int("KHABAR_MAX_BATCH_CHARS", d.max_batch_chars),
            max_body_bytes=_int("KHABAR_MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
            max_concurrency=_int("KHABAR_MAX_CONCURRENCY", d.max_concurrency),
            workers=_int("KHABAR_WORKERS", d.workers),
            api_threads=_int("KHABAR_API_THREADS", d.api_threads),
            batch_size=_int("KHABAR_BATCH_SIZE", d.batch_size),
            max_batch_size=_int("KHABAR_MAX_BATCH_SIZE", d.max_batch_size, minimum=2),
            max_latency_ms=_int("KHABAR_MAX_LATENCY_MS", d.max_latency_ms),
            timeout_s=_int("KHABAR_TIMEOUT_S", d.timeout_s),
            reload_poll_s=_int("KHABAR_RELOAD_POLL_S", d.reload_poll_s, minimum=0),
        )

    def limits(self) -> dict:
        """The limits a client must respect (reported by GET /info; no secrets)."""
        keys = ("max_chars", "max_targets", "max_target_chars", "max_batch_items",
                "max_batch_chars", "max_body_bytes", "max_concurrency", "timeout_s")
        return {k: v for k, v in asdict(self).items() if k in keys}


SETTINGS = Settings.from_env()
