"""The labelling service: ``bentoml serve khabar.serving.service:Khabar``.

Each worker loads the model once. ``/label`` and ``/label_batch`` validate the request, then hand
the articles to ``label_many``, a batchable endpoint, through BentoML's in-process self-call
(``self.to_async.label_many``): concurrent requests are grouped there by adaptive batching, and
the predictor batches the windows of all grouped articles together. Settings come from
environment variables (:mod:`khabar.settings`); the guard in
:mod:`khabar.serving.middleware` handles the token and limits; :mod:`khabar.serving.web` serves
``/info``, ``/ui``, ``/docs.json`` and ``POST /admin/reload``. The model is held by
:mod:`khabar.serving.reload`, which follows promotions without a restart.
"""
from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import bentoml
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import JSONResponse

from khabar.models.engines import resolve_engine_name
from khabar.models.hybrid import hybrid_info
from khabar.models.predictor import Article
from khabar.models.schema import TaskError
from khabar.serving.middleware import INTERNAL, INTERNAL_PATH, Guard
from khabar.serving.reload import ModelHolder
from khabar.serving.schemas import BatchRequest, BatchResult, LabelRequest, LabelResult
from khabar.serving.web import app as web_app, use_openapi_of
from khabar.settings import settings, use_torch_threads

S = settings()

log = logging.getLogger("khabar.serving")
ITEMS_PER_CALL = bentoml.metrics.Histogram(
    name="khabar_model_call_articles", documentation="Articles labelled per model call (after batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


@bentoml.asgi_app(web_app)
@bentoml.service(name="khabar", workers=S.workers, threads=S.api_threads, traffic={"timeout": S.timeout_s},
                 http={"host": "127.0.0.1", "port": 3000})
class Khabar:
    """Topic, stance toward named targets, and named entities of Arabic news articles."""

    def __init__(self) -> None:
        use_torch_threads(S.threads)  # the worker owns its process: its share of the cores (khabar serve)
        self.holder = ModelHolder(S.model_tag, batch_size=S.batch_size)
        self.holder.start_polling(S.reload_poll_s)

    def __is_ready__(self) -> bool:
        return getattr(self, "holder", None) is not None

    @bentoml.api(route="/label", input_spec=LabelRequest)
    async def label(self, text: str, targets: list[str], tasks: list[str] | None,
                    actors: list[str]) -> LabelResult:
        """Label one article: topic, stance toward each target (and each actor's, with `actors`),
        entities with offsets into `text`."""
        item = LabelRequest(text=text, targets=targets, tasks=tasks, actors=actors)
        out = await self._label([item])
        return out if isinstance(out, JSONResponse) else LabelResult.model_validate(out[0])

    @bentoml.api(route="/label_batch", input_spec=BatchRequest)
    async def label_batch(self, items: list[LabelRequest]) -> BatchResult:
        """Label up to KHABAR_MAX_BATCH_ITEMS articles; results in the same order."""
        out = await self._label(items)
        return out if isinstance(out, JSONResponse) else BatchResult(results=out)

    @bentoml.api(route=INTERNAL_PATH, batchable=True, max_batch_size=S.max_batch_size,
                 max_latency_ms=S.max_latency_ms)
    def label_many(self, items: list[LabelRequest]) -> list[dict]:
        """Internal (404 from outside): the articles of concurrent requests, labelled in one pass."""
        ITEMS_PER_CALL.observe(len(items))
        predictor = self.holder.live.predictor  # one model for the whole call, even during a switch
        return predictor.label([Article(i.text, i.targets, i.tasks, i.actors) for i in items])

    def info(self) -> dict:
        """What GET /info answers."""
        live = self.holder.live
        schema, training = live.loaded.schema, live.loaded.training
        tasks = {api: (schema.entity_types() if api == "entities" else schema.tasks[api])
                 for api in live.predictor.api_tasks}
        return {"model": {"tag": live.loaded.tag, **live.loaded.info},
                "backbone": backbone_for_callers(schema.backbone),
                "tasks": tasks, "windowing": {"max_length": schema.max_length, "stride": schema.stride,
                                              "stance_windows": schema.stance_windows,
                                              "stance_select": schema.stance_select,
                                              "stance_pool": schema.stance_pool},
                "hybrid": hybrid_info(live.loaded.hybrid),
                "dev_metrics": training.get("dev_metrics", {}), "limits": S.limits(),
                "auth_required": S.api_token is not None, "reload": self.holder.status(),
                "engine": resolve_engine_name(None)}

    async def _label(self, items: list[LabelRequest]) -> list[dict] | JSONResponse:
        """Check tasks against the model, then run the items through the batching endpoint.

        The check is the predictor's own rule, run here before batching so that one bad item is a
        422 for its request instead of failing the other requests grouped with it.
        """
        schema = self.holder.live.predictor.schema
        for n, item in enumerate(items):
            try:
                schema.request_tasks(item.tasks, item.actors)
            except TaskError as err:
                where = f"items.{n}.{err.request_field}" if len(items) > 1 else err.request_field
                return _error(422, f"{where}: {err} (see GET /info)")
        try:
            return await self._batched(items)
        except ServiceUnavailable:
            return _error(503, "the service is overloaded: retry shortly", {"Retry-After": "5"})

    async def _batched(self, items: list[LabelRequest], attempts: int = 3) -> list[dict]:
        """``label_many`` through BentoML's self-call, so that adaptive batching groups requests."""
        token = INTERNAL.set(True)
        try:
            for attempt in range(attempts):
                try:
                    return await self.to_async.label_many(items)
                except (aiohttp.ClientConnectionError, RuntimeError) as err:
                    # BentoML 1.4.40's self-call client closes its session every 100 calls, under
                    # the calls still in flight (bentoml/BentoML#5540); labelling is idempotent.
                    if attempt == attempts - 1 or (isinstance(err, RuntimeError) and "closed" not in str(err)):
                        raise
                    log.warning("retrying the batching call after %r", err)
        finally:
            INTERNAL.reset(token)
        raise AssertionError("unreachable")


def backbone_for_callers(record: dict) -> dict:
    """The stored backbone record as ``/info`` shows it to any caller: its name (a hub id,
    ``offline``, or a local folder's own name) and build manifest, never a path on the server."""
    name, resolved = str(record.get("name", "")), str(record.get("resolved", ""))
    hub_id = name == resolved and not name.startswith((".", "/", "~"))
    shown = name if hub_id else Path(name).name
    return {**{k: v for k, v in record.items() if k != "resolved"}, "name": shown}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


Khabar.add_asgi_middleware(Guard, settings=S)


use_openapi_of(Khabar)
