"""The SQL side of bulk runs that `evalsvc.store.runs` does not cover: reads by range, status changes.

Everything here takes a session from `Store.session()`; the run's items stay the record of what is
done, so each function reads or writes them directly and nothing is cached between calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from evalsvc.errors import NotFound
from evalsvc.store import ItemStatus, Result, Run, RunItem, RunStatus
from evalsvc.store.models import MAX_RUN_ID


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


def get_run(session: Session, run_id: int, *, tenant_id: int | None = None) -> Run:
    """The run; with `tenant_id`, only that tenant's (another tenant's run looks absent)."""
    run = session.get(Run, run_id) if 1 <= run_id <= MAX_RUN_ID else None  # PostgreSQL refuses larger
    if run is None or (tenant_id is not None and run.tenant_id != tenant_id):
        raise NotFound(f"no run {run_id}")
    return run


def group_run_ids(session: Session, run: Run) -> list[int]:
    """The runs judging the same manifest as `run` (one per judge, `runs.group_id`), `run` included."""
    if run.group_id is None:
        return [run.id]
    group = select(Run.id).where(or_(Run.id == run.group_id, Run.group_id == run.group_id)).order_by(Run.id)
    return list(session.scalars(group))


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
