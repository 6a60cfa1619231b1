"""Bulk runs: a run, its items (one per manifest line), and what became of each.

The items are the record of a run, not the queue: a worker (or a resumed run after Redis was lost)
asks here for what is still pending, and `(run_id, item_key)` being unique makes submitting the same
manifest twice, or retrying a submission, add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, func, select, update
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.store.models import (
    EMPATHYEVAL_JUDGE,
    MODES,
    ItemStatus,
    LLMVerdict,
    Result,
    Run,
    RunItem,
    RunStatus,
)
from evalsvc.store.upsert import upsert


@dataclass(frozen=True)
class RunItemSpec:
    """One manifest line: its key, where its two audio files are, and what it is labelled with."""

    item_key: str
    query_ref: str
    response_ref: str
    system: str | None = None
    dataset: str | None = None
    emotion: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reference_ref: str | None = None
    reference_text: str | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """The end of one attempt at an item: its result (or LLM verdict), or an error and neither."""

    item_id: int
    result_id: int | None = None
    verdict_id: int | None = None
    emotion: str | None = None
    """An emotion label read from the query's audio (the +emotion judges), kept where the manifest
    gave none: the summary's breakdowns then show it."""
    error_code: str | None = None
    error_message: str | None = None


def create_run(
    session: Session,
    *,
    name: str,
    mode: str,
    tenant_id: int | None = None,
    judge: str = EMPATHYEVAL_JUDGE,
    group_id: int | None = None,
    max_cost_usd: float | None = None,
) -> Run:
    if mode not in MODES:
        raise InvalidParameter(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    run = Run(
        name=name, mode=mode, tenant_id=tenant_id, judge=judge, group_id=group_id, max_cost_usd=max_cost_usd
    )
    session.add(run)
    session.flush()
    return run


def add_run_items(session: Session, run_id: int, items: Sequence[RunItemSpec]) -> int:
    """Add items in batches, skipping keys the run already has; returns how many items the run has."""
    keys = [item.item_key for item in items]
    if len(set(keys)) != len(keys):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})[:5]
        raise InvalidParameter(f"item keys must be unique within a run; repeated: {', '.join(duplicated)}")
    rows = [
        vars(item) | {"run_id": run_id, "status": ItemStatus.PENDING.value, "attempts": 0} for item in items
    ]
    upsert(session, RunItem, rows, conflict=["run_id", "item_key"])
    return refresh_run_counts(session, run_id).item_count


# run_items column -> the results column it holds a copy of (see `RunItem`).
RESULT_COPIES = {
    "ns": Result.ns,
    "wa": Result.wa,
    "eu": Result.eu,
    "es": Result.es,
    "avg": Result.avg,
    "result_error_code": Result.error_code,
    "model_version_id": Result.model_version_id,
}


def record_outcomes(session: Session, outcomes: Sequence[ItemOutcome]) -> tuple[int, int]:
    """Mark items done (linked to their result) or failed (with the error); (done, failed) counts.

    Only items still pending are written: an item another runner of the same shard recorded first
    keeps that outcome and its attempt count (see `evalsvc.store.item_leases`), so a slow runner never
    overwrites a finished run. The same batched UPDATE clears the item's lease and copies the linked
    result's scores onto it (NULL for a failed item), read from `results` by the database rather than
    passed in, so a copy always matches its result.
    """
    done = [
        outcome for outcome in outcomes if outcome.result_id is not None or outcome.verdict_id is not None
    ]
    failed = [outcome for outcome in outcomes if outcome.result_id is None and outcome.verdict_id is None]
    return _record(session, done, ItemStatus.DONE), _record(session, failed, ItemStatus.FAILED)


def _record(session: Session, outcomes: Sequence[ItemOutcome], status: ItemStatus) -> int:
    if not outcomes:
        return 0
    items = RunItem.__table__.c
    result_id = bindparam("new_result_id")
    verdict_id = bindparam("new_verdict_id")
    copies = {
        name: select(column).where(Result.id == result_id).scalar_subquery()
        for name, column in RESULT_COPIES.items()
    }
    verdict_version = select(LLMVerdict.model_version_id).where(LLMVerdict.id == verdict_id)
    copies["model_version_id"] = func.coalesce(copies["model_version_id"], verdict_version.scalar_subquery())
    copies["verdict"] = select(LLMVerdict.value).where(LLMVerdict.id == verdict_id).scalar_subquery()
    statement = (
        update(RunItem.__table__)
        .where(items.id == bindparam("item_id"), items.status == ItemStatus.PENDING.value)
        .values(
            status=status.value,
            result_id=result_id,
            verdict_id=verdict_id,
            emotion=func.coalesce(items.emotion, bindparam("new_emotion", type_=String)),
            last_error_code=bindparam("new_error_code"),
            last_error=bindparam("new_error"),
            attempts=items.attempts + 1,
            lease_holder=None,
            lease_expires_at=None,
            updated_at=func.now(),
            **copies,
        )
    )
    result = session.execute(
        statement,
        [
            {
                "item_id": outcome.item_id,
                "new_result_id": outcome.result_id,
                "new_verdict_id": outcome.verdict_id,
                "new_emotion": outcome.emotion,
                "new_error_code": outcome.error_code,
                "new_error": outcome.error_message,
            }
            for outcome in outcomes
        ],
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # summed over the parameter sets


def refresh_run_counts(session: Session, run_id: int) -> Run:
    """Recount the run's items by status; a run whose items are all finished becomes `done`.

    The run's row is locked before counting: workers finishing batches of the same run at the same time
    then count one after the other, each seeing the batches committed before it. Counting first would
    let a transaction write counts taken before a concurrent one committed (a lost update: a run
    stuck at 196 of 200 done).
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise InvalidParameter(f"no run with id {run_id}")
    counts: dict[str, int] = dict(
        session.execute(
            select(RunItem.status, func.count()).where(RunItem.run_id == run_id).group_by(RunItem.status)
        ).all()
    )
    run.item_count = sum(counts.values())
    run.done_count = counts.get(ItemStatus.DONE, 0)
    run.failed_count = counts.get(ItemStatus.FAILED, 0)
    finished = run.item_count > 0 and not counts.get(ItemStatus.PENDING) and run.status != RunStatus.DONE
    if finished:
        run.status = RunStatus.DONE
        run.finished_at = func.now()
    session.flush()
    if finished:
        session.refresh(run, ["finished_at"])  # the database's clock, like every other timestamp
    return run
