"""The shard function: what both `evalsvc bulk run` (in process) and an RQ worker execute per shard.

    claim a batch of the shard's pending items (SQL) ──▶ ItemScorer ──▶ outcomes ──▶ one transaction:
         ▲                                                                     items done/failed,
         └──────────────── until no item of the shard is pending ◀──────────── run counts refreshed

Why it is safe to run a shard again, in whole or in part, at any moment, even twice at once:

- items are claimed before they are scored (`evalsvc.store.item_leases`), so two runners of one shard
  share its items instead of scoring them twice, and a dead runner's claims expire with its heartbeat;
- only items still `pending` are claimed and recorded, so a retried or resumed shard skips finished
  items and a slow runner never overwrites an item another one finished;
- results are upserted by content key (first writer wins) and looked up before scoring, so an item
  whose result was stored just before a crash is answered from the store on the next attempt;
- an item is marked done in the same transaction for its whole batch, so a crash leaves each item
  either finished with its result linked, or pending.

A failure about one item (bad audio) is recorded on that item and the shard goes on. An exception
from the model on a batch is narrowed down by halving the batch, so one poison pair fails alone. A
transient failure (model tier busy, database unreachable) is retried with exponential backoff; if it
outlasts the retries it is raised, and the job fails, to be retried by RQ (or resumed) later. A run
missing from the database is a worker configured with another database: `RunNotInDatabase`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from rq.timeouts import BaseTimeoutException

from evalsvc.bulk.llm_items import JudgeScorers, RunJudging
from evalsvc.bulk.scorers import ItemScorer, failed, is_transient
from evalsvc.bulk.shards import Shard
from evalsvc.errors import ConfigurationError, EvalsvcError, NotFound, RunNotInDatabase
from evalsvc.scoring import isolate_failures
from evalsvc.settings import Mode, Settings
from evalsvc.store import ItemOutcome, RunStatus, Store, grant_results, record_outcomes, refresh_run_counts
from evalsvc.store.item_leases import ShardLease
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.run_records import PendingItem, RunProgress, group_runs
from evalsvc.store.scope import get_run

logger = logging.getLogger(__name__)
T = TypeVar("T")
BatchHook = Callable[[RunProgress], None]


def _no_hook(_progress: RunProgress) -> None:
    return None


def _no_heartbeat() -> None:
    return None


@dataclass(frozen=True)
class ShardContext:
    """What a shard needs from the process running it; built once per process, reused per shard."""

    store: Store
    scorer: ItemScorer
    batch_size: int
    batch_retries: int = 3
    backoff_s: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    lease_ttl_s: float = 300.0  # how long a claim outlives the runner's last heartbeat
    lease_poll_s: float = 1.0  # how often a runner waiting for another's claims looks again
    judges: JudgeScorers | None = None
    """The scorers of runs judged by an LLM judge; `scorer` is EmpathyEval's."""

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, scorer: ItemScorer) -> ShardContext:
        return cls(
            store,
            scorer,
            settings.bulk_batch_size,
            settings.bulk_batch_retries,
            settings.bulk_backoff_s,
            lease_ttl_s=settings.bulk_heartbeat_ttl_s,
            judges=JudgeScorers(settings, store, scorer),
        )

    def scorer_for(self, run: RunJudging) -> ItemScorer:
        if run.judge == EMPATHYEVAL_JUDGE:
            return self.scorer
        if self.judges is None:
            raise ConfigurationError(
                f"this runner has no LLM judges configured; run {run.run_id} needs {run.judge}"
            )
        return self.judges.for_run(run)

    def retrying(self, action: Callable[[], T], heartbeat: Callable[[], None] = _no_heartbeat) -> T:
        """Run `action`, retrying transient failures after 1x, 2x, 4x ... `backoff_s`; `heartbeat`
        before each wait says the job is alive while it waits out an outage."""
        for attempt in range(self.batch_retries + 1):
            try:
                return action()
            except EvalsvcError as error:
                if not is_transient(error) or attempt == self.batch_retries:
                    raise
                delay = self.backoff_s * 2**attempt
                logger.warning(
                    "transient failure (%s), retry in %.1f s: %s", error.code, delay, error.message
                )
                heartbeat()
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass(frozen=True)
class ShardReport:
    shard: Shard
    done: int = 0
    failed: int = 0
    cancelled: bool = False

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "run_id": self.shard.run_id,
            "first_item_id": self.shard.first_item_id,
            "last_item_id": self.shard.last_item_id,
            "done": self.done,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


def process_shard(
    context: ShardContext,
    shard: Shard,
    *,
    on_batch: BatchHook = _no_hook,
    heartbeat: Callable[[], None] = _no_heartbeat,
) -> ShardReport:
    """Score the shard's pending items; return once none is pending (or the run was cancelled).

    `on_batch` gets the run's progress after each recorded batch (the in-process progress bar);
    `heartbeat` is called after each batch, before each retry wait and while waiting for another
    runner's claims (the RQ worker's liveness); each call also renews this runner's claims.
    """
    run_info = context.retrying(lambda: _load(context.store, shard), heartbeat)
    if run_info is None:
        return ShardReport(shard, cancelled=True)
    mode, tenant_id, judging = run_info
    scorer = context.scorer_for(judging)
    lease = ShardLease(context.store, shard, context.lease_ttl_s)

    def beat() -> None:
        _renew(lease)
        heartbeat()

    done = failed_count = 0
    try:
        while True:
            batch = context.retrying(lambda: lease.claim(context.batch_size), beat)
            if batch:
                outcomes = context.retrying(lambda batch=batch: _score_isolated(scorer, batch, mode), beat)
                recorded, progress = context.retrying(
                    lambda outcomes=outcomes: _record(context.store, shard.run_id, tenant_id, outcomes),
                    beat,
                )
                done += recorded[0]
                failed_count += recorded[1]
                on_batch(progress)
                heartbeat()
            elif context.retrying(lease.pending, beat):
                # Another runner holds the rest: wait for its batch (or for its claims to expire).
                beat()
                context.sleep(context.lease_poll_s)
            else:
                return ShardReport(shard, done, failed_count)
            if context.retrying(lambda: _cancelled(context.store, shard.run_id), beat):
                logger.info("run %s was cancelled; shard %s stops", shard.run_id, shard)
                return ShardReport(shard, done, failed_count, cancelled=True)
    finally:
        _release(lease)


def _renew(lease: ShardLease) -> None:
    """Best effort: while the database is down the claims cannot be renewed, nor taken by anyone."""
    try:
        lease.renew()
    except EvalsvcError as error:
        logger.warning("could not renew the claims of %s: %s", lease.shard, error.message)


def _release(lease: ShardLease) -> None:
    """Best effort: claims that cannot be released now expire after their TTL."""
    try:
        lease.release()
    except EvalsvcError as error:
        logger.warning("could not release the claims of %s: %s", lease.shard, error.message)


def _load(store: Store, shard: Shard) -> tuple[Mode, int | None, RunJudging] | None:
    """(mode, tenant, judge) of the shard's run; None when the run was cancelled."""
    with store.session() as session:
        try:
            run = get_run(session, shard.run_id)
        except NotFound:
            database = store.url.render_as_string(hide_password=True)
            raise RunNotInDatabase(
                f"run {shard.run_id} is not in this worker's database ({database}): start the worker "
                "with the database `evalsvc bulk submit` used (EVALSVC_DATABASE_URL)"
            ) from None
        if run.status == RunStatus.CANCELLED:
            return None
        judging = RunJudging(
            run.id, run.judge, run.max_cost_usd, tuple(member.id for member in group_runs(session, run))
        )
        return run.mode, run.tenant_id, judging  # type: ignore[return-value]


def _cancelled(store: Store, run_id: int) -> bool:
    """Checked before every batch: a cancellation stops the shard before its next model call."""
    with store.session() as session:
        return get_run(session, run_id).status == RunStatus.CANCELLED


def _score_isolated(scorer: ItemScorer, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
    """Outcomes for `items`; an unexpected exception is pinned on the pair causing it by halving."""
    return isolate_failures(
        lambda batch: scorer.score_items(batch, mode),
        items,
        _internal_failure,
        reraise=(
            EvalsvcError,
            BaseTimeoutException,
        ),  # about no pair in particular: transient, setup, timeout
    )


def _internal_failure(item: PendingItem, error: Exception) -> ItemOutcome:
    logger.exception("the model failed on item %s", item.key, exc_info=error)
    return failed(item, "internal_error", f"the model failed on this pair ({type(error).__name__})")


def _record(
    store: Store, run_id: int, tenant_id: int | None, outcomes: Sequence[ItemOutcome]
) -> tuple[tuple[int, int], RunProgress]:
    """Record the outcomes; ((done, failed) recorded here, the run's progress)."""
    with store.session() as session:
        recorded = record_outcomes(session, outcomes)
        if tenant_id is not None:
            # The run's tenant may read these results, whichever run or request first produced them.
            grant_results(session, tenant_id, [o.result_id for o in outcomes if o.result_id is not None])
        return recorded, RunProgress.of(refresh_run_counts(session, run_id))
