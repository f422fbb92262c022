"""The ASGI guard in front of the service: token, body size, content type, load shedding, and
validation errors rewritten into messages that say what to fix.

It is plain ASGI (no BaseHTTPMiddleware) so that it can refuse a request before BentoML reads or
parses it. ``/label`` reaches the model through an in-process HTTP hop to the batchable
``/internal/label_many`` endpoint (that is how BentoML 1.4 batches calls made from another API);
the hop runs in the caller's task, so the context variable :data:`INTERNAL` marks it and lets it
through, while the same path from outside is a 404.
"""
from __future__ import annotations

import contextvars
import hmac
import json
import logging

from khabar.settings import Settings

INTERNAL: contextvars.ContextVar[bool] = contextvars.ContextVar("khabar_internal_call", default=False)
INTERNAL_PATH = "/internal/label_many"
OPEN_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})
LABEL_PATHS = frozenset({"/label", "/label_batch"})
_TOO_LARGE = {"string_too_long", "too_long", "batch_too_long"}


def _is_open(path: str) -> bool:
    # The page must load without a token: a browser cannot add a header to a navigation; it
    # holds no data, and its calls to /label carry the token.
    return path in OPEN_PATHS or path == "/ui" or path.startswith("/ui/")


async def send_json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    """Send a whole JSON response."""
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _is_content(loc) -> bool:
    # Too much content (an article, the batch) is a 413; too many targets is a 422 like any
    # other invalid field.
    loc = [x for x in loc if x != "body"]
    return not loc or loc[-1] == "text" or loc == ["items"]


def describe_validation(detail: list[dict]) -> tuple[int, str]:
    """A status (413 for size limits, else 422) and one readable line from pydantic's errors."""
    parts, status = [], 422
    for err in detail:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        kind, msg = err.get("type", ""), err.get("msg", "invalid value")
        if kind in _TOO_LARGE and _is_content(err.get("loc", ())):
            status = 413
        if kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({msg}): send a JSON object such as "
                         '{"text": "...", "targets": ["..."]}')
        elif kind == "missing":
            parts.append(f"{loc}: required field is missing")
        elif kind == "extra_forbidden":
            parts.append(f"{loc}: unknown field; the fields are text, targets, tasks (and items for /label_batch)")
        else:
            hint = " (the limits are in GET /info)" if kind in _TOO_LARGE else ""
            parts.append(f"{loc}: {msg}{hint}" if loc else msg + hint)
    return status, "; ".join(parts) or "invalid request"


class _QuietValidation(logging.Filter):
    """BentoML logs every rejected request as an ERROR with a traceback; a client's invalid
    input is not a server error, so it becomes one INFO line (hostile traffic must not flood logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        if record.exc_info and isinstance(record.exc_info[1], ValidationError):
            record.msg, record.exc_info, record.exc_text = "Rejected invalid request on %s [%s]", None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class Guard:
    """ASGI middleware; ``settings`` gives the token and the limits."""

    def __init__(self, app, settings: Settings) -> None:
        logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietValidation())
        self.app = app
        self.settings = settings
        self.in_flight = 0
        self._token = settings.api_token.encode() if settings.api_token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or INTERNAL.get():
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith("/internal/"):
            return await send_json(send, 404, {"error": f"no such endpoint {path}"})
        if self._token and not _is_open(path) and not self._authorized(scope):
            return await send_json(send, 401, {"error": "missing or wrong token: send the header "
                                               "'Authorization: Bearer <KHABAR_API_TOKEN>'"},
                                   {"WWW-Authenticate": 'Bearer realm="khabar"'})
        if path not in LABEL_PATHS or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        return await self._label(scope, receive, send)

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        return False

    async def _label(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers", ()))
        ctype = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if ctype not in (b"application/json", b""):
            return await send_json(send, 415, {"error": f"content type {ctype.decode('latin-1')!r} is not "
                                               "accepted: send JSON with 'Content-Type: application/json'"})
        limit = self.settings.max_body_bytes
        too_big = {"error": f"the request body is over {limit} bytes (KHABAR_MAX_BODY_BYTES): send a "
                            "shorter article, or fewer articles per /label_batch call"}
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return await send_json(send, 413, too_big)
        body = bytearray()
        while True:  # read it all here, up to the limit, so that an oversized stream stops early
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await send_json(send, 413, too_big)
            if not message.get("more_body"):
                break
        if self.in_flight >= self.settings.max_concurrency:
            return await send_json(send, 429, {"error": f"{self.in_flight} requests are in flight "
                                               "(KHABAR_MAX_CONCURRENCY): retry shortly"}, {"Retry-After": "1"})
        self.in_flight += 1
        try:
            await self.app(scope, _replay(bytes(body), receive), _Rewriter(send))
        finally:
            self.in_flight -= 1


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


class _Rewriter:
    """Turns BentoML's 400 for a pydantic error into a 413/422 whose ``error`` says what to fix."""

    def __init__(self, send) -> None:
        self.send = send
        self.start: dict | None = None
        self.body = bytearray()

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 400:
            self.start = message
            return
        if self.start is None:
            return await self.send(message)
        self.body += message.get("body", b"")
        if message.get("more_body"):
            return
        status, out = 400, {"error": "bad request"}
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            data = data[0]  # BentoML wraps some 4xx errors in a one-element list
        if isinstance(data, dict) and isinstance(data.get("detail"), list):
            status, text = describe_validation(data["detail"])
            out = {"error": text, "detail": data["detail"]}
        elif isinstance(data, dict) and "error" in data:
            out = {"error": str(data["error"])}
        extra = {k.decode(): v.decode() for k, v in self.start.get("headers", [])
                 if k.lower() not in (b"content-length", b"content-type")}
        await send_json(self.send, status, out, extra)
