"""The scoring routes (`/v1/score`, `/v1/results/{id}`) and the probes, each a call into `inputs` and
`score_handoff`; every answer is a model of `evalsvc.protocol`.

`/v1/score` reads its body first and takes an in-flight slot only then (a slow upload holds no
slot), then decodes and scores while it holds it. Its OpenAPI entry is declared in `openapi`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from evalsvc import __version__
from evalsvc.api.auth import tenant_of
from evalsvc.api.docs import DOCS_PATH
from evalsvc.api.inputs import decode_raw_request, read_score_request
from evalsvc.api.litapi import SCORE_PATH
from evalsvc.api.openapi import score_request_body
from evalsvc.api.responses import error_response
from evalsvc.api.score_handoff import ScoreService
from evalsvc.api.shared import SharedState
from evalsvc.audio import AudioLimits
from evalsvc.errors import NotReady
from evalsvc.ids import MAX_ID
from evalsvc.protocol import (
    ERROR_RESPONSES,
    ErrorResponse,
    HealthResponse,
    JudgeResponse,
    ReadyResponse,
    ScoreResponse,
    ServiceIndex,
    StoredResult,
)
from evalsvc.settings import Settings

RESULT_PATH = "/v1/results/{result_id}"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def add_score_routes(app: FastAPI, settings: Settings, service: ScoreService, shared: SharedState) -> None:
    limits = AudioLimits.from_settings(settings)

    @app.get("/", response_model=ServiceIndex, summary="What this server is (no key needed)", tags=["probes"])
    async def index() -> ServiceIndex:
        return ServiceIndex(version=__version__, docs=DOCS_PATH, openapi=app.openapi_url or "/openapi.json")

    @app.post(
        SCORE_PATH,
        response_model=ScoreResponse | JudgeResponse,
        response_model_exclude_unset=True,  # `error` and `metadata` only where the answer has them
        responses=ERROR_RESPONSES,
        openapi_extra=score_request_body(),
        summary="Judge one spoken query/response pair",
        tags=["scoring"],
    )
    async def score(request: Request) -> ScoreResponse | JudgeResponse:
        raw = await read_score_request(request, settings)
        tenant = tenant_of(request)
        with shared.in_flight.slot(tenant.id):
            score_input = await run_in_threadpool(decode_raw_request, raw, limits)
            return await service.score(tenant, score_input)

    @app.get(
        RESULT_PATH,
        response_model=StoredResult,
        response_model_exclude_unset=True,
        responses={code: ERROR_RESPONSES[code] for code in (401, 422, 503)}
        | {404: {"model": ErrorResponse, "description": "No such result for this API key (not_found)."}},
        summary="A result this API key's tenant received before",
        tags=["scoring"],
    )
    async def stored_result(
        request: Request, result_id: Annotated[int, Path(ge=1, le=MAX_ID)]
    ) -> StoredResult:
        return await run_in_threadpool(service.stored_result, tenant_of(request), result_id)

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
