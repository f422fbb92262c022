"""The live model of a service worker, and how it follows promotions without a restart.

A worker holds one :class:`Live` (stored model + predictor). A reload loads the wanted model
*beside* the live one, labels a short text with it, and only then swaps it in with a single
assignment; requests already running finish on the model they started with. When loading or
the trial fails, the live model stays and ``GET /info`` reports the error.

Which model is wanted: ``KHABAR_MODEL`` unset or ``khabar:promoted`` follows the promoted model
(``khabar models promote``, ``khabar retrain``); any other tag pins the worker to that model.
Two triggers, both on by default:

- a poll of the stages file every ``KHABAR_RELOAD_POLL_S`` seconds (default 10; 0 turns it off),
  which is how every worker of a multi-worker service learns of a promotion;
- ``POST /admin/reload``, which checks at once in the worker that receives it (when the wanted
  model is already live, it re-reads that model's store entry and reports damage, still serving). With
  ``KHABAR_API_TOKEN`` set it needs the token like every other route; without a token it is
  accepted only from the machine itself (127.0.0.1 or ::1), so an open service cannot be made to
  load models by strangers. Behind a reverse proxy every client looks local: set a token there.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from khabar.models.predictor import Article, Predictor
from khabar.models.store import MODEL_NAME, LoadedModel, load_model

log = logging.getLogger("khabar.serving")
FOLLOW = f"{MODEL_NAME}:promoted"
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost"})
# Labelled by a new model before it goes live: a broken model fails here, not on a user's request.
_TRIAL = Article("أعلنت الحكومة في بغداد اتفاقا جديدا مع الشركة.", ["الاتفاق"])  # every task the model has


@dataclass(frozen=True)
class Live:
    """A loaded model and its predictor, swapped in together."""

    loaded: LoadedModel
    predictor: Predictor
    since: float


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ModelHolder:
    """The worker's live model; :meth:`reload` switches it atomically or not at all."""

    def __init__(self, wanted: str | None, batch_size: int = 16) -> None:
        self.pinned = wanted if wanted and wanted != FOLLOW else None
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one reload at a time; requests never take it
        self.last_error: dict | None = None
        self.last_reload: dict | None = None
        self._failed: str | None = None  # a tag that failed: not retried by the poll
        self.live = self._load(self.wanted_tag())

    def wanted_tag(self) -> str:
        """The tag this worker should serve: the pinned one, else the promoted one. With nothing
        promoted a worker starts on the newest model and then stays on it (the newest may be a
        candidate the gate refused)."""
        from khabar.models.registry import promoted_tag, serving_tag

        if self.pinned or not hasattr(self, "live"):
            return serving_tag(self.pinned)
        return promoted_tag() or self.live.loaded.tag

    def _load(self, tag: str) -> Live:
        from khabar.models.engines import make_engine

        loaded = load_model(tag)
        # KHABAR_ENGINE: int8 ONNX by default (its graph saved with the model), or fp32.
        predictor = Predictor.from_loaded(loaded, batch_size=self.batch_size, engine=make_engine(None, loaded))
        predictor.label([_TRIAL])
        return Live(loaded, predictor, time.time())

    def reload(self, *, force: bool = False, reason: str = "poll") -> dict:
        """Load the wanted model if it is not live; returns what happened.

        ``force`` retries a tag that failed before (the poll does not, to avoid loading a
        broken model every few seconds).
        """
        with self._lock:
            try:
                tag = self.wanted_tag()
            except Exception as err:  # the stages file or the store cannot be read right now
                return self._failure(None, err, reason)
            live = self.live.loaded.tag
            if tag == live and force:
                # A manual reload of the live model re-reads its store entry beside it: damage
                # (a corrupted or deleted entry) is reported now, not at the next restart, and
                # the model in memory keeps serving either way.
                try:
                    self._load(tag)
                except Exception as err:
                    return self._failure(tag, err, reason)
                self._failed, self.last_error = None, None
                return {"changed": False, "live": live, "wanted": tag, "error": None, "verified": True}
            if tag == live:
                return {"changed": False, "live": live, "wanted": tag, "error": self.last_error}
            if tag == self._failed and not force:
                return {"changed": False, "live": live, "wanted": tag, "error": self.last_error}
            try:
                new = self._load(tag)
            except Exception as err:
                return self._failure(tag, err, reason)
            self.live = new  # the switch: one reference assignment
            self._failed, self.last_error = None, None
            self.last_reload = {"from": live, "to": tag, "at": _now(), "reason": reason}
            log.info("now serving %s (was %s; %s)", tag, live, reason)
            return {"changed": True, "live": tag, "wanted": tag, "error": None}

    def _failure(self, tag: str | None, err: Exception, reason: str) -> dict:
        self._failed = tag
        self.last_error = {"tag": tag, "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                           "at": _now(), "reason": reason}
        log.warning("could not load %s, still serving %s: %s", tag, self.live.loaded.tag, self.last_error["error"])
        return {"changed": False, "live": self.live.loaded.tag, "wanted": tag, "error": self.last_error}

    def status(self) -> dict:
        """What ``GET /info`` says about reloading."""
        return {"live": self.live.loaded.tag, "follows": self.pinned or FOLLOW,
                "live_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.live.since)),
                "last_reload": self.last_reload, "last_error": self.last_error}

    def start_polling(self, every_s: float) -> threading.Thread | None:
        """Check for a newly promoted model every ``every_s`` seconds in a daemon thread."""
        if every_s <= 0 or self.pinned:
            return None

        def loop() -> None:
            while True:
                time.sleep(every_s)
                self.reload(reason="poll")

        thread = threading.Thread(target=loop, name="khabar-reload-poll", daemon=True)
        thread.start()
        return thread


def reload_allowed(client_host: str | None, token_configured: bool) -> bool:
    """Whether ``POST /admin/reload`` may run: with a token the guard has checked it already;
    without one, only from this machine."""
    return token_configured or (client_host or "") in LOCAL_HOSTS


async def admin_reload(request):
    """``POST /admin/reload``: load the wanted model now (200), or say why not (403, 500)."""
    import bentoml
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    from khabar.settings import settings

    host = request.client.host if request.client else None
    if not reload_allowed(host, settings().api_token is not None):
        return JSONResponse({"error": "without KHABAR_API_TOKEN, POST /admin/reload is accepted only from this "
                                      "machine (127.0.0.1); set a token to reload from elsewhere"}, status_code=403)
    holder: ModelHolder = bentoml.get_current_service().holder
    # Loading takes seconds: off the event loop, so that labelling requests keep being served.
    out = await run_in_threadpool(holder.reload, force=True, reason="POST /admin/reload")
    return JSONResponse(out, status_code=500 if out["error"] else 200)
