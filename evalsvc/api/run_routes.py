"""Bulk runs over HTTP, per tenant: `POST /v1/runs`, `GET /v1/runs/{id}`, cancel, results.

The routes are thin: each parses its input and calls `evalsvc.bulk.run_operations` in a worker thread (SQL,
Redis and stat-ing every audio file all block). A run belongs to the tenant of the key that created
it; any other tenant gets 404 for it, as if it did not exist.

An uploaded manifest has no directory of its own, so its relative paths resolve against the
server's data roots (`EVALSVC_DATA_ROOTS`), and every path must lie inside one; with no data root
configured, bulk runs over HTTP are refused row by row (`manifest_invalid`).

Redis is pinged before anything is recorded: when the queue is down the answer is 503 and nothing
was created, so the client may simply retry. (Should Redis fail between the ping and the enqueue, the
run is recorded as `pending` and the 503 names it; `evalsvc bulk resume` queues it.)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from evalsvc.api.auth import tenant_of
from evalsvc.bulk.manifest import check_references, manifest_format, parse_manifest
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.results import MEDIA_TYPES, ResultFormat, encode_rows, read_page
from evalsvc.bulk.run_operations import cancel_run, check_budget, run_state, submit_runs
from evalsvc.errors import ManifestInvalid
from evalsvc.ids import MAX_ID, MAX_RUN_ID
from evalsvc.protocol import (
    ERROR_RESPONSES,
    JUDGE_LIST_PATTERN,
    NUL_FREE,
    ErrorResponse,
    ManifestInvalidResponse,
    RunResponse,
)
from evalsvc.settings import Mode, Settings
from evalsvc.store import Store
from evalsvc.store.models import EMPATHYEVAL_JUDGE

RUNS_PATH = "/v1/runs"
_RunId = Annotated[int, Path(ge=1, le=MAX_RUN_ID)]


class RunsAPI:
    """The state the routes share: settings, the store, and this process's Redis connection."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._queue: ShardQueue | None = None

    def queue(self) -> ShardQueue:
        """Connected on first use, in the API server process that uses it (they are forked)."""
        if self._queue is None:
            self._queue = ShardQueue.from_settings(self.settings)
        return self._queue

    def create(
        self,
        tenant_id: int,
        name: str,
        mode: Mode,
        filename: str,
        data: bytes,
        skip_invalid: bool,
        judges: list[str],
        max_cost_usd: float | None = None,
    ) -> RunResponse:
        """One run per judge (several: a group sharing the budget `max_cost_usd`, as `bulk submit
        --judge a,b --max-cost USD`); the answer is the first run's, with every run's id."""
        check_budget(self.settings, max_cost_usd, "max_cost_usd")
        manifest = parse_manifest(data, manifest_format(filename), roots=self.settings.data_roots)
        items = manifest.accepted(skip_invalid=skip_invalid)
        check_references(items, judges)
        self.queue().ping()  # a queue that is down: 503 before anything is recorded, so a retry is safe
        submitted = submit_runs(
            self.store,
            self.queue,
            name=name,
            mode=mode,
            items=items,
            shard_size=self.settings.bulk_shard_size,
            tenant_id=tenant_id,
            judges=judges,
            max_cost_usd=max_cost_usd,
        )
        first = submitted.run_ids[0]
        state = run_state(self.store, first, tenant_id=tenant_id).to_dict()
        skipped = [str(problem) for problem in manifest.problems]
        return RunResponse.model_validate(
            state | {"queued_jobs": sum(submitted.queued_jobs), "skipped": skipped, "runs": submitted.run_ids}
        )

    def cancel(self, tenant_id: int, run_id: int) -> RunResponse:
        cancel_run(self.store, self.queue, run_id, tenant_id=tenant_id)
        return RunResponse.model_validate(run_state(self.store, run_id, tenant_id=tenant_id).to_dict())


def add_run_routes(app: FastAPI, settings: Settings, store: Store) -> None:
    api = RunsAPI(settings, store)
    errors = {code: ERROR_RESPONSES[code] for code in (401, 413, 503)}
    not_found = {404: {"model": ErrorResponse, "description": "No such run for this API key (not_found)."}}

    @app.post(
        RUNS_PATH,
        status_code=201,
        response_model=RunResponse,
        response_model_exclude_unset=True,
        responses=errors
        | {422: {"model": ManifestInvalidResponse, "description": "Invalid rows (manifest_invalid)."}},
        summary="Start a bulk run from a manifest (JSON lines or CSV)",
        tags=["bulk runs"],
    )
    async def create_run(
        request: Request,
        manifest: Annotated[UploadFile, File(description="The manifest: a .jsonl or .csv file.")],
        name: Annotated[str, Form(min_length=1, max_length=200, pattern=NUL_FREE)],
        mode: Annotated[Mode, Form()] = "scores",
        skip_invalid: Annotated[bool, Form()] = False,
        judge: Annotated[
            str,
            Form(
                pattern=JUDGE_LIST_PATTERN,
                max_length=200,
                description="Who judges the run: empathyeval or an LLM judge (A/B: rows need a reference); "
                "several, comma-separated, make one run each, linked as a group (`runs` lists them).",
            ),
        ] = EMPATHYEVAL_JUDGE,
        max_cost_usd: Annotated[
            float | None,
            Form(
                gt=0,
                le=1e9,
                description="The LLM budget of the run (of the group): no batch of LLM calls starts that "
                "could take the runs' spending past it (an operator raises it: `evalsvc bulk resume RUN "
                "--max-cost USD`). Needs the server's LLM prices (EVALSVC_LLM_PRICE_*_PER_1M).",
            ),
        ] = None,
    ) -> RunResponse | JSONResponse:
        data = await manifest.read()
        tenant = tenant_of(request)
        judges = judge.split(",")
        try:
            answer = await run_in_threadpool(
                api.create,
                tenant.id,
                name,
                mode,
                manifest.filename or "",
                data,
                skip_invalid,
                judges,
                max_cost_usd,
            )
        except ManifestInvalid as error:
            return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)
        return answer

    @app.get(
        RUNS_PATH + "/{run_id}",
        response_model=RunResponse,
        response_model_exclude_unset=True,
        responses=errors | not_found,
        summary="A run's state and counts",
        tags=["bulk runs"],
    )
    async def get_run(request: Request, run_id: _RunId) -> RunResponse:
        state = await run_in_threadpool(run_state, store, run_id, tenant_id=tenant_of(request).id)
        return RunResponse.model_validate(state.to_dict())

    @app.post(
        RUNS_PATH + "/{run_id}/cancel",
        response_model=RunResponse,
        response_model_exclude_unset=True,
        responses=errors | not_found,
        summary="Stop a run: no further item is scored",
        tags=["bulk runs"],
    )
    async def cancel(request: Request, run_id: _RunId) -> RunResponse:
        return await run_in_threadpool(api.cancel, tenant_of(request).id, run_id)

    @app.get(
        RUNS_PATH + "/{run_id}/results",
        response_class=Response,
        responses=errors
        | not_found
        | {
            200: {
                "description": "One row per item, JSON lines or CSV (with a header on every page). "
                '`Link: <...>; rel="next"` and `X-Next-Cursor` point to the next page; absent on the last.',
                "content": {MEDIA_TYPES["jsonl"]: {}, MEDIA_TYPES["csv"]: {}},
            }
        },
        summary="A run's results, page by page",
        tags=["bulk runs"],
    )
    async def results(
        request: Request,
        run_id: _RunId,
        after: Annotated[
            int, Query(ge=0, le=MAX_ID, description="Cursor: the X-Next-Cursor of the previous page.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        format: Annotated[ResultFormat, Query()] = "jsonl",
    ) -> Response:
        page = await run_in_threadpool(
            read_page, store, run_id, after=after, limit=limit, tenant_id=tenant_of(request).id
        )
        headers = {}
        if page.next_after is not None:
            following = request.url.include_query_params(after=page.next_after, limit=limit, format=format)
            headers = {"Link": f'<{following}>; rel="next"', "X-Next-Cursor": str(page.next_after)}
        return Response(
            encode_rows(page.rows, format, header=True), media_type=MEDIA_TYPES[format], headers=headers
        )
