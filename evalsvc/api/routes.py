"""The HTTP routes, each a call into `inputs` and `service`; and the OpenAPI entry of `/v1/score`.

`/v1/score` reads its body itself (two content types), so FastAPI cannot derive the request schema
from a signature: it is declared in `openapi_extra`, with `ScoreRequest` added to the components.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from evalsvc.api.auth import tenant_of
from evalsvc.api.inputs import read_score_request
from evalsvc.api.litapi import SCORE_PATH
from evalsvc.api.responses import error_response
from evalsvc.api.schemas import (
    ERROR_RESPONSES,
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    ScoreRequest,
    ScoreResponse,
    StoredResult,
)
from evalsvc.api.service import ScoreService
from evalsvc.api.shared import SharedState
from evalsvc.engine.types import MODES
from evalsvc.errors import NotReady
from evalsvc.settings import Settings

RESULT_PATH = "/v1/results/{result_id}"
_MAX_ID = 2**63 - 1
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def add_routes(app: FastAPI, settings: Settings, service: ScoreService, shared: SharedState) -> None:
    @app.post(
        SCORE_PATH,
        response_model=ScoreResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_score_request_body(),
        summary="Judge one spoken query/response pair",
        tags=["scoring"],
    )
    async def score(request: Request) -> JSONResponse:
        score_input = await read_score_request(request, settings)
        return JSONResponse(await service.score(tenant_of(request), score_input))

    @app.get(
        RESULT_PATH,
        response_model=StoredResult,
        responses={code: ERROR_RESPONSES[code] for code in (401, 422, 503)}
        | {404: {"model": ErrorResponse, "description": "No such result for this API key (not_found)."}},
        summary="A result this API key's tenant received before",
        tags=["scoring"],
    )
    async def stored_result(
        request: Request, result_id: Annotated[int, Path(ge=1, le=_MAX_ID)]
    ) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(service.stored_result, tenant_of(request), result_id))

    @app.get("/health", response_model=HealthResponse, summary="Alive (no key needed)", tags=["probes"])
    async def health() -> HealthResponse:
        return HealthResponse()

    @app.get(
        "/ready",
        response_model=ReadyResponse,
        responses={503: {"model": ErrorResponse, "description": "Model or database not ready (not_ready)."}},
        summary="Model loaded and database reachable (no key needed)",
        tags=["probes"],
    )
    async def ready() -> JSONResponse:
        model, database = await run_in_threadpool(service.readiness)
        if model and database:
            return JSONResponse(ReadyResponse(ready=True, model=True, database=True).model_dump())
        missing = [name for name, ok in (("model", model), ("database", database)) if not ok]
        return error_response(NotReady(f"not ready: {' and '.join(missing)}"))

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics", tags=["probes"])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(shared.metrics.render(shared.in_flight.current), media_type=PROMETHEUS_TEXT)

    _add_request_schemas(app)


def _score_request_body() -> dict[str, Any]:
    multipart = {
        "type": "object",
        "required": ["query", "response"],
        "properties": {
            "query": {"type": "string", "format": "binary", "description": "The user's spoken query."},
            "response": {"type": "string", "format": "binary", "description": "The spoken response judged."},
            "mode": {"type": "string", "enum": list(MODES), "default": "scores"},
            "metadata": {"type": "string", "description": "A JSON object, echoed back (at most 64 KiB)."},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}},
            },
        }
    }


def _add_request_schemas(app: FastAPI) -> None:
    """Put `ScoreRequest` (and what it refers to) into the generated document's components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components["ScoreRequest"] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
