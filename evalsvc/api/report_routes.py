"""`GET /v1/reports/...`: the reports of `evalsvc.reports` over HTTP, scoped to the caller's tenant.

    GET /v1/reports/runs/{run_id}/summary
    GET /v1/reports/leaderboard?run=..&run=..&dataset=..&sort=avg
    GET /v1/reports/compare?run=A&run=B | ?run=R&system=X&system=Y [&pair_by, dataset, tie_margin, resamples, seed]
    GET /v1/reports/runs/{run_id}/agreement?labels=SET[&match=item|audio]
    GET /v1/reports/runs/{run_id}/export?format=csv|jsonl|parquet[&dataset, system]
    GET /v1/reports/runs/{run_id}/html[?labels=SET&match=..]

The JSON answers are the models of `evalsvc.reports.schemas`, as `evalsvc report ... --json` prints
them. Routes are plain `def`s: FastAPI runs them in its thread pool, so database reads and numpy
never block the event loop. Another tenant's run or label set is a 404, like a missing one. Text
parameters are names of stored things: at most 200 characters, without NUL (`schemas.Name`).

Exports stream: text formats chunk by chunk from a server-side cursor; Parquet (written whole before
its footer can exist) through a temporary file that spills to disk beyond a few MiB. The first batch
is read before the answer starts, so a query that fails is answered with its error, not with 200
and a cut body. `result_id` in an export is the tenant's own number for the result, as in every
answer of the API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import chain
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import Field

from evalsvc.api.auth import tenant_of
from evalsvc.ids import MAX_RUN_ID
from evalsvc.protocol import NUL_FREE, ErrorResponse, Name
from evalsvc.reports import (
    agreement_report,
    compare,
    export_batches,
    labelled_scores,
    leaderboards,
    run_report_html,
    run_summary,
)
from evalsvc.reports.compare import DEFAULT_RESAMPLES, DEFAULT_TIE_MARGIN, MAX_RESAMPLES, sides
from evalsvc.reports.export import MEDIA_TYPES, ExportFormat, encode_text, export_columns, write_parquet
from evalsvc.reports.schemas import AgreementReport, Comparison, Leaderboards, RunSummary
from evalsvc.reports.summary import SORT_KEYS
from evalsvc.store import Store, tenant_result_numbers
from evalsvc.store.report_queries import Match, PairBy

PREFIX = "/v1/reports"
RUN = f"{PREFIX}/runs/{{run_id}}"
_SPOOL_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A parameter out of range or inconsistent (invalid_parameter).",
        401: "Missing or unknown API key (unauthorized).",
        404: "No such run or label set for this API key (not_found).",
        422: "Parameters missing or of the wrong type (validation_failed).",
        503: "Database unavailable (database_unavailable); retry later.",
    }.items()
}

RunId = Annotated[int, Path(ge=1, le=MAX_RUN_ID, description="A run of the caller's tenant.")]
Runs = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_RUN_ID)]], Query(description="Run ids (repeat the parameter).")
]
OptionalName = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NUL_FREE)]
LabelSetName = Annotated[
    str, Query(min_length=1, max_length=200, pattern=NUL_FREE, description="Label set name.")
]
_EXPORT_CONTENT = {
    "text/csv": {"schema": {"type": "string"}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


def add_report_routes(app: FastAPI, store: Store) -> None:
    """Register the routes on the app itself (not through an `APIRouter`): each is then a plain route
    with a path template, which is what the request metrics label answers by."""
    get = partial(app.get, tags=["reports"], responses=_RESPONSES)

    @get(
        f"{RUN}/summary",
        response_model=RunSummary,
        summary="Means with 95% CI and breakdowns",
    )
    def summary(request: Request, run_id: RunId) -> RunSummary:
        with store.session() as session:
            return run_summary(session, run_id, tenant_of(request).id)

    @get(f"{PREFIX}/leaderboard", response_model=Leaderboards, summary="Systems ranked per dataset")
    def leaderboard(
        request: Request,
        run: Runs = [],  # noqa: B006 (FastAPI copies defaults per request)
        dataset: OptionalName = None,
        sort: Annotated[str, Query(description=f"One of {', '.join(SORT_KEYS)}.")] = "avg",
    ) -> Leaderboards:
        with store.session() as session:
            return leaderboards(session, tenant_of(request).id, run_ids=run, dataset=dataset, sort=sort)

    @get(f"{PREFIX}/compare", response_model=Comparison, summary="Paired comparison of two runs or systems")
    def paired(
        request: Request,
        run: Runs,
        system: Annotated[list[Name], Query(description="System A, then system B.")] = [],  # noqa: B006
        pair_by: PairBy | None = None,
        dataset: OptionalName = None,
        tie_margin: Annotated[float, Query(ge=0.0, le=4.0)] = DEFAULT_TIE_MARGIN,
        resamples: Annotated[int, Query(ge=1, le=MAX_RESAMPLES)] = DEFAULT_RESAMPLES,
        seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0,
    ) -> Comparison:
        side_a, side_b = sides(run, system)
        with store.session() as session:
            return compare(
                session,
                tenant_of(request).id,
                side_a,
                side_b,
                pair_by=pair_by,
                dataset=dataset,
                tie_margin=tie_margin,
                resamples=resamples,
                seed=seed,
            )

    @get(
        f"{RUN}/agreement",
        response_model=AgreementReport,
        summary="Agreement with human ratings",
    )
    def agreement(
        request: Request,
        run_id: RunId,
        labels: LabelSetName,
        match: Match = "item",
    ) -> AgreementReport:
        with store.session() as session:
            return agreement_report(labelled_scores(session, run_id, labels, tenant_of(request).id, match))

    @get(
        f"{RUN}/export",
        response_class=Response,
        responses=_RESPONSES
        | {200: {"description": "The rows, in the format asked for.", "content": _EXPORT_CONTENT}},
        summary="Items joined with results",
    )
    def export(
        request: Request,
        run_id: RunId,
        fmt: Annotated[ExportFormat, Query(alias="format")] = "csv",
        dataset: OptionalName = None,
        system: OptionalName = None,
    ) -> StreamingResponse:
        batches = _tenant_export(store, run_id, tenant_of(request).id, dataset=dataset, system=system)
        first = next(batches, None)  # the query runs now: a 404 or a database error is still an answer
        rows = chain([] if first is None else [first], batches)
        with store.session() as session:
            columns = export_columns(session, [run_id])
        body = _spooled_parquet(rows, columns) if fmt == "parquet" else encode_text(rows, fmt, columns)
        return StreamingResponse(
            body,
            media_type=MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="run-{run_id}.{fmt}"'},
        )

    @get(f"{RUN}/html", response_class=HTMLResponse, summary="Self-contained HTML report")
    def html(
        request: Request,
        run_id: RunId,
        labels: OptionalName = None,
        match: Match = "item",
    ) -> HTMLResponse:
        with store.session() as session:
            page = run_report_html(session, run_id, tenant_of(request).id, labels=labels, match=match)
        return HTMLResponse(page)


def _tenant_export(
    store: Store, run_id: int, tenant_id: int, *, dataset: str | None, system: str | None
) -> Iterator[list[dict[str, object]]]:
    """The run's export batches, `result_id` turned into the tenant's own number for each result."""
    with store.session() as session:
        for batch in export_batches(session, [run_id], tenant_id, dataset=dataset, system=system):
            linked = [row["result_id"] for row in batch if row["result_id"] is not None]
            numbers = tenant_result_numbers(session, tenant_id, linked)  # type: ignore[arg-type]
            for row in batch:
                if row["result_id"] is not None:
                    row["result_id"] = numbers.get(row["result_id"])  # type: ignore[call-overload]
            yield batch


def _spooled_parquet(batches: Iterator[list[dict[str, object]]], columns: Sequence[str]) -> Iterator[bytes]:
    """The Parquet file, written to a spooled temporary file first, then sent in chunks."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        write_parquet(batches, spool, columns)
        spool.seek(0)
        while chunk := spool.read(_CHUNK_BYTES):
            yield chunk
