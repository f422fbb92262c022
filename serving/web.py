"""The GET routes beside the labelling API: ``/info``, the analysts' page ``/ui`` and ``/docs.json``.

BentoML API methods answer POST only, so these live in a small Starlette app mounted into the
service (same process, same port). ``/docs.json`` is BentoML's own OpenAPI document completed with
what BentoML cannot know: GET /info, the error answers of the guard (401/413/415/422/429/503),
and without the internal batching hop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from khabar.serving.middleware import INTERNAL_PATH
from khabar.serving.reload import admin_reload
from khabar.serving.schemas import BatchResult, ErrorResponse, InfoResponse, LabelResult

STATIC = Path(__file__).resolve().parent / "static"
_ERRORS = {
    "401": "Missing or wrong token (only when KHABAR_API_TOKEN is set)",
    "413": "Body, article or batch over its limit (see GET /info)",
    "415": "Body is not JSON",
    "422": "Invalid request: the message says which field and what to change",
    "429": "Too many requests in flight; retry after Retry-After seconds",
    "503": "Overloaded; retry after Retry-After seconds",
}


# The service registers itself here when it is defined (serving/service.py mounts this app, so
# importing it back from here would be a cycle).
_openapi_owner: Any = None


def use_openapi_of(service: Any) -> None:
    """Make ``/docs.json`` complete the OpenAPI document of ``service`` (a BentoML service)."""
    global _openapi_owner
    _openapi_owner = service


def _service():
    import bentoml

    return bentoml.get_current_service()


async def info(_: Request) -> JSONResponse:
    """The served model, its labels and dev metrics, and the request limits."""
    return JSONResponse(_service().info())


async def openapi(_: Request) -> JSONResponse:
    """BentoML's OpenAPI document, completed (see the module docstring)."""
    if _openapi_owner is None:
        return JSONResponse({"error": "no service registered its OpenAPI document"}, status_code=503)
    spec = _openapi_owner.openapi_spec.asdict()
    spec["paths"].pop(INTERNAL_PATH, None)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in [n for n in schemas if n.startswith("label_many")]:
        del schemas[name]
    for model in (ErrorResponse, InfoResponse, LabelResult, BatchResult):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, result in (("/label", "LabelResult"), ("/label_batch", "BatchResult")):
        responses = spec["paths"][path]["post"]["responses"]
        # BentoML inlines the 200 schema and drops the null of Optional fields ("topic": null when
        # topic was not asked for); the pydantic model's own schema keeps it.
        responses["200"] = {"description": "Successful Response", "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{result}"}}}}
        for code, text in _ERRORS.items():
            responses[code] = {"description": text, "content": error}
    spec["paths"]["/info"] = {"get": {
        "description": info.__doc__, "tags": ["Service APIs"], "operationId": "khabar__info",
        "responses": {"200": {"description": "Successful Response", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InfoResponse"}}}},
            "401": {"description": _ERRORS["401"], "content": error}}}}
    spec["paths"]["/ui/"] = {"get": {
        "description": "The analysts' page (HTML).", "tags": ["Service APIs"], "operationId": "khabar__ui",
        "responses": {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}}}
    return JSONResponse(spec)


app = Starlette(routes=[
    Route("/info", info, methods=["GET"]),
    Route("/admin/reload", admin_reload, methods=["POST"]),
    Route("/docs.json", openapi, methods=["GET"]),
    Route("/ui", lambda _: RedirectResponse("/ui/"), methods=["GET"]),
    Mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui"),
])
