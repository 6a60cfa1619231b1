"""Bulk runs as operations: create, queue (or run in process), resume, cancel, summarise.

The CLI (`evalsvc bulk ...`) and the HTTP routes (`/v1/runs`) are thin layers over these functions.
Every operation reads the state it acts on from SQL, the record of a run, and treats Redis as a
transport that may have lost everything: `queue_run` and `resume_run` enqueue exactly the shards that
still have pending items.

Run states: `pending` (recorded, not queued yet, e.g. Redis was down) -> `running` (queued or being
scored in process) -> `done` (no pending item left; failed items count as finished) or `cancelled`
(no further item is scored; `resume` re-opens it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsvc.bulk.manifest import ManifestItem
from evalsvc.bulk.processing import BatchHook, ShardContext, ShardReport, process_shard
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.shards import Shard, plan_shards, shards_with_pending
from evalsvc.errors import InvalidParameter, QueueUnavailable
from evalsvc.judge_scoring import budget_needs_prices
from evalsvc.settings import Mode, Settings
from evalsvc.store import RunStatus, Store, add_run_items, create_run, refresh_run_counts
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.run_records import (
    RunProgress,
    error_counts,
    item_ids,
    lead_group,
    newest_runs,
    reset_failed,
    run_times,
    set_group_budget,
    set_status,
)
from evalsvc.store.scope import get_run


@dataclass(frozen=True)
class RunState:
    """What `bulk status` and `GET /v1/runs/{id}` report."""

    id: int
    name: str
    mode: str
    status: str
    items: int
    done: int
    failed: int
    created_at: str | None
    finished_at: str | None
    errors: dict[str, int] = field(default_factory=dict)
    judge: str = EMPATHYEVAL_JUDGE
    group_id: int | None = None

    @property
    def pending(self) -> int:
        return self.items - self.done - self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.mode,
            "judge": self.judge,
            "group_id": self.group_id,
            "status": self.status,
            "items": self.items,
            "done": self.done,
            "failed": self.failed,
            "pending": self.pending,
            "errors": self.errors,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


def check_budget(settings: Settings, max_cost_usd: float | None, option: str) -> None:
    """Refuse an LLM budget (`option` names it: `--max-cost`, `max_cost_usd`) that is not above 0 or
    that nothing could enforce, because the LLM prices are not set; before anything is recorded."""
    if max_cost_usd is None:
        return
    if not max_cost_usd > 0:
        raise InvalidParameter(f"{option} must be above 0, not {max_cost_usd:g}")
    if settings.llm_price_input_per_1m is None or settings.llm_price_output_per_1m is None:
        raise budget_needs_prices(option)


def record_runs(
    store: Store,
    *,
    name: str,
    mode: Mode,
    items: Sequence[ManifestItem],
    tenant_id: int | None = None,
    judges: Sequence[str] = (EMPATHYEVAL_JUDGE,),
    max_cost_usd: float | None = None,
) -> list[int]:
    """Record one run per judge, all with every item, in one transaction (a crash leaves no
    half-recorded group); the run ids in the order of `judges`. Several judges make a group: each run's
    `group_id` is the first run's id, and `--max-cost` is the budget of the group's LLM calls."""
    specs = [item.to_spec() for item in items]
    ids: list[int] = []
    with store.session() as session:
        for judge in dict.fromkeys(judges):
            run = create_run(
                session,
                name=name,
                mode=mode,
                tenant_id=tenant_id,
                judge=judge,
                group_id=ids[0] if ids else None,
                max_cost_usd=max_cost_usd,
            )
            add_run_items(session, run.id, specs)
            ids.append(run.id)
        if len(ids) > 1:
            lead_group(session, ids[0])
        return ids


@dataclass(frozen=True)
class Submission:
    run_ids: list[int]
    queued_jobs: list[int]
    """Shard jobs queued per run, in the order of `run_ids`."""


def submit_runs(
    store: Store,
    open_queue: Callable[[], ShardQueue],
    *,
    name: str,
    mode: Mode,
    items: Sequence[ManifestItem],
    shard_size: int,
    tenant_id: int | None = None,
    judges: Sequence[str] = (EMPATHYEVAL_JUDGE,),
    max_cost_usd: float | None = None,
    on_recorded: Callable[[list[int]], None] = lambda _run_ids: None,
) -> Submission:
    """Record the runs (one per judge, `record_runs`), then queue their shards: `evalsvc bulk submit`
    and `POST /v1/runs` alike.

    The record comes first and stays: should the queue be unreachable, the runs are `pending` and the
    `QueueUnavailable` raised names them and the command that queues them later. `on_recorded` hears
    the run ids as soon as they exist (the CLI prints them before it queues).
    """
    run_ids = record_runs(
        store,
        name=name,
        mode=mode,
        items=items,
        tenant_id=tenant_id,
        judges=judges,
        max_cost_usd=max_cost_usd,
    )
    on_recorded(run_ids)
    queued: list[int] = []
    try:
        queue = open_queue()
        for run_id in run_ids:
            queued.append(queue_run(store, queue, run_id, shard_size))
    except QueueUnavailable as error:
        waiting = run_ids[len(queued) :]
        which = f"run {waiting[0]} is" if len(waiting) == 1 else f"runs {', '.join(map(str, waiting))} are"
        resume = " and ".join(f"`evalsvc bulk resume {run_id}`" for run_id in waiting)
        raise QueueUnavailable(f"{which} recorded but not queued: {error.message}; then {resume}") from error
    return Submission(run_ids, queued)


def pending_shards(store: Store, run_id: int, shard_size: int) -> list[Shard]:
    """The run's shards (always cut from its full item list) that still hold pending items."""
    with store.session() as session:
        shards = plan_shards(run_id, item_ids(session, run_id), shard_size)
        return shards_with_pending(shards, item_ids(session, run_id, pending_only=True))


def queue_run(store: Store, queue: ShardQueue, run_id: int, shard_size: int) -> int:
    """Mark the run running and enqueue its shards with pending items; returns the jobs enqueued."""
    shards = pending_shards(store, run_id, shard_size)
    _start(store, run_id)
    return queue.enqueue(shards)


def run_in_process(
    store: Store, context: ShardContext, run_id: int, shard_size: int, on_batch: BatchHook
) -> list[ShardReport]:
    """Score the run's pending shards here, one after the other, through the same shard function."""
    shards = pending_shards(store, run_id, shard_size)
    _start(store, run_id)
    reports = []
    for shard in shards:
        report = process_shard(context, shard, on_batch=on_batch)
        reports.append(report)
        if report.cancelled:
            break
    return reports


def reopen_run(store: Store, run_id: int, *, retry_failed: bool, tenant_id: int | None = None) -> int:
    """Make a run resumable: failed items back to pending when asked; returns how many were reset."""
    with store.session() as session:
        get_run(session, run_id, tenant_id=tenant_id)
        reset = reset_failed(session, run_id) if retry_failed else 0
        refresh_run_counts(session, run_id)
        return reset


@dataclass(frozen=True)
class Cancellation:
    removed_jobs: int
    queue_problem: QueueUnavailable | None
    """Why queued jobs could not be removed (Redis unreachable); they see the status and stop."""


def cancel_run(
    store: Store, open_queue: Callable[[], ShardQueue] | None, run_id: int, *, tenant_id: int | None = None
) -> Cancellation:
    """Stop the run: no shard scores another batch of it; `evalsvc bulk cancel` and `DELETE /v1/runs/ID`.

    The status is the signal (shards check it before starting and before every batch); removing the
    waiting jobs only spares the workers the check, so an unreachable Redis is no failure here. A run
    already done stays done.
    """
    with store.session() as session:
        run = get_run(session, run_id, tenant_id=tenant_id)
        if run.status != RunStatus.DONE:
            set_status(session, run, RunStatus.CANCELLED)
    if open_queue is None:  # a run scored in process: no queue holds its jobs
        return Cancellation(0, None)
    try:
        queue = open_queue()
    except QueueUnavailable as error:
        return Cancellation(0, error)
    return Cancellation(queue.cancel(run_id), None)


def run_state(store: Store, run_id: int, *, tenant_id: int | None = None) -> RunState:
    with store.session() as session:
        run = get_run(session, run_id, tenant_id=tenant_id)
        return RunState(
            id=run.id,
            name=run.name,
            mode=run.mode,
            judge=run.judge,
            group_id=run.group_id,
            status=str(run.status.value),
            items=run.item_count,
            done=run.done_count,
            failed=run.failed_count,
            errors=error_counts(session, run_id),
            **run_times(run),
        )


def list_runs(store: Store, *, tenant_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs (of one tenant, or all), with their counts and tenant, for `bulk list`."""
    with store.session() as session:
        return [
            {
                "id": run.id,
                "name": run.name,
                "tenant": tenant,
                "mode": run.mode,
                "judge": run.judge,
                "group_id": run.group_id,
                "status": str(run.status.value),
                "items": run.item_count,
                "done": run.done_count,
                "failed": run.failed_count,
                "pending": run.item_count - run.done_count - run.failed_count,
                **run_times(run),
            }
            for run, tenant in newest_runs(session, tenant_id=tenant_id, limit=limit)
        ]


def run_progress(store: Store, run_id: int) -> RunProgress:
    with store.session() as session:
        return RunProgress.of(get_run(session, run_id))


def _start(store: Store, run_id: int) -> None:
    """`running` while items are pending (also a finished or cancelled run being resumed)."""
    with store.session() as session:
        run = refresh_run_counts(session, run_id)
        if run.done_count + run.failed_count < run.item_count:
            set_status(session, run, RunStatus.RUNNING)


def set_max_cost(store: Store, run_id: int, max_cost_usd: float) -> None:
    """A new LLM budget for the run and the other runs of its judge group (`bulk resume --max-cost`)."""
    with store.session() as session:
        set_group_budget(session, get_run(session, run_id), max_cost_usd)
