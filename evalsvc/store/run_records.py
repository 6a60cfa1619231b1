"""The SQL of bulk runs beside `evalsvc.store.runs`: progress, reads by range, status changes.

Everything here takes a session from `Store.session()`; the run's items stay the record of what is
done, so each function reads or writes them directly and nothing is cached between calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from evalsvc.store.models import ItemStatus, Result, Run, RunItem, RunStatus, Tenant


@dataclass(frozen=True)
class PendingItem:
    """What scoring one item needs, detached from the session that read it."""

    id: int
    key: str
    query_path: str
    response_path: str
    reference_path: str | None = None
    reference_text: str | None = None


@dataclass(frozen=True)
class RunProgress:
    """A run's counts as of one read; `pending` items are neither done nor failed."""

    run_id: int
    status: RunStatus
    items: int
    done: int
    failed: int

    @property
    def pending(self) -> int:
        return self.items - self.done - self.failed

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.DONE, RunStatus.CANCELLED) or (self.items > 0 and not self.pending)

    @classmethod
    def of(cls, run: Run) -> RunProgress:
        return cls(run.id, run.status, run.item_count, run.done_count, run.failed_count)


def lead_group(session: Session, run_id: int) -> None:
    """Make the run the first of its judge group (the others were created with its id as `group_id`)."""
    session.get_one(Run, run_id).group_id = run_id


def set_group_budget(session: Session, run: Run, max_cost_usd: float) -> None:
    """A new LLM budget for the run and the other runs of its judge group."""
    for member in group_runs(session, run):
        member.max_cost_usd = max_cost_usd


def group_runs(session: Session, run: Run, tenant_id: int | None = None) -> list[Run]:
    """The runs judging the same manifest as `run` (one per judge, `runs.group_id`: the first run's id),
    `run` included, in order; with `tenant_id`, only that tenant's."""
    if run.group_id is None:
        return [run]
    query = select(Run).where(or_(Run.id == run.group_id, Run.group_id == run.group_id)).order_by(Run.id)
    if tenant_id is not None:
        query = query.where(Run.tenant_id == tenant_id)
    return list(session.scalars(query))


def item_ids(session: Session, run_id: int, *, pending_only: bool = False) -> list[int]:
    query = select(RunItem.id).where(RunItem.run_id == run_id).order_by(RunItem.id)
    if pending_only:
        query = query.where(RunItem.status == ItemStatus.PENDING)
    return list(session.scalars(query))


def set_status(session: Session, run: Run, status: RunStatus) -> None:
    """Change the run's status; `finished_at` is set for the final states and cleared otherwise."""
    run.status = status
    final = status in (RunStatus.DONE, RunStatus.CANCELLED, RunStatus.FAILED)
    run.finished_at = func.now() if final else None  # type: ignore[assignment]
    session.flush()


def reset_failed(session: Session, run_id: int) -> int:
    """Put failed items back to pending (their attempts and last error are kept); how many."""
    result = session.execute(
        update(RunItem)
        .where(RunItem.run_id == run_id, RunItem.status == ItemStatus.FAILED)
        .values(status=ItemStatus.PENDING, updated_at=func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def error_counts(session: Session, run_id: int) -> dict[str, int]:
    """Failed items by error code, most frequent first."""
    rows = session.execute(
        select(RunItem.last_error_code, func.count())
        .where(RunItem.run_id == run_id, RunItem.status == ItemStatus.FAILED)
        .group_by(RunItem.last_error_code)
        .order_by(func.count().desc())
    )
    return {code or "unknown": count for code, count in rows}


def result_page(
    session: Session, run_id: int, *, after: int, limit: int
) -> list[tuple[RunItem, Result | None]]:
    """Items with id > `after` (a keyset cursor: stable while workers write) and their results."""
    rows = session.execute(
        select(RunItem, Result)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id == run_id, RunItem.id > after)
        .order_by(RunItem.id)
        .limit(limit)
    )
    return [(item, result) for item, result in rows]


def run_times(run: Run) -> dict[str, str | None]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {"created_at": iso(run.created_at), "finished_at": iso(run.finished_at)}


def item_audio_hashes(session: Session, run_id: int) -> dict[str, tuple[str | None, str | None]]:
    """Item key -> (query sha256, response sha256) of the run's results; (None, None) for an item
    without a result yet."""
    rows = session.execute(
        select(RunItem.item_key, Result.query_sha256, Result.response_sha256)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id == run_id)
    )
    return {key: (query, response) for key, query, response in rows}


def newest_runs(
    session: Session, *, tenant_id: int | None = None, limit: int = 50
) -> list[tuple[Run, str | None]]:
    """The newest runs (of one tenant, or all), each with its tenant's name."""
    query = (
        select(Run, Tenant.name)
        .outerjoin(Tenant, Run.tenant_id == Tenant.id)
        .order_by(Run.id.desc())
        .limit(limit)
    )
    if tenant_id is not None:
        query = query.where(Run.tenant_id == tenant_id)
    return [(run, tenant) for run, tenant in session.execute(query)]


def item_assessments(session: Session, run_id: int) -> Iterator[tuple[str, str | None, str | None]]:
    """(item key, emotion label, assessment) of every item of the run; None where there is none."""
    statement = (
        select(RunItem.item_key, RunItem.emotion, Result.assessment)
        .select_from(RunItem)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id == run_id)
    )
    yield from session.execute(statement)  # type: ignore[misc]  # rows unpack as tuples
