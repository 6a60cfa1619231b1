"""Run items with their results, and labelled items, read for training data: streamed, never a whole
table in memory.

`stream_items` reads run items with their results through `yield_per`: on PostgreSQL that is a
server-side cursor (psycopg streams `yield_per` rows at a time), on SQLite the statement is stepped
as rows are taken. Only plain columns are selected (no ORM objects, no identity map growing with the
run), so memory stays flat however large the run is; the benchmark measures it on 100,000 items.

`labeled_items` and `teacher_items` are the exceptions, by necessity: head fitting needs every
labelled pair's features at once, and label sets and teacher runs are thousands of rows, not millions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter, NotFound
from evalsvc.store import HumanLabel, LabelSet, Result, Run, RunItem

STREAM_BATCH = 1000


@dataclass(frozen=True)
class ItemRow:
    """One run item and what its result says; the result fields are None for an unscored item."""

    run_id: int
    item_key: str
    query_ref: str
    response_ref: str
    system: str | None
    meta: dict[str, Any] | None
    query_sha256: str | None
    response_sha256: str | None
    model_version_id: int | None
    scores: tuple[float, float, float, float] | None
    avg: float | None
    assessment: str | None

    @property
    def scored(self) -> bool:
        return self.scores is not None and self.avg is not None


@dataclass(frozen=True)
class LabeledItem:
    """A pair with its target scores (NS, WA, EU, ES): human ones averaged over the raters who gave
    them, or a teacher run's (one "rater")."""

    item_key: str
    query_ref: str
    response_ref: str
    targets: tuple[float, float, float, float]
    raters: int


def check_runs(session: Session, run_ids: Sequence[int]) -> None:
    if not run_ids:
        raise InvalidParameter("give at least one run (--run ID)")
    found = set(session.scalars(select(Run.id).where(Run.id.in_(run_ids))))
    missing = sorted(set(run_ids) - found)
    if missing:
        raise NotFound(f"no run with id {', '.join(map(str, missing))}")


def item_keys(session: Session, run_ids: Sequence[int], *, batch: int = STREAM_BATCH) -> Iterator[str]:
    """The item keys of the runs, streamed (what a `--texts` file's ids must match)."""
    check_runs(session, run_ids)
    statement = select(RunItem.item_key).where(RunItem.run_id.in_(run_ids)).execution_options(yield_per=batch)
    yield from session.scalars(statement)


def stream_items(
    session: Session, run_ids: Sequence[int], *, by_query: bool = False, batch: int = STREAM_BATCH
) -> Iterator[ItemRow]:
    """Every item of the runs, in submission order, or grouped by query audio (`by_query`: scored
    items sorted by their query's sha256, unscored ones at the end)."""
    check_runs(session, run_ids)
    columns = (
        RunItem.run_id,
        RunItem.item_key,
        RunItem.query_ref,
        RunItem.response_ref,
        RunItem.system,
        RunItem.meta,
        Result.query_sha256,
        Result.response_sha256,
        Result.model_version_id,
        Result.ns,
        Result.wa,
        Result.eu,
        Result.es,
        Result.avg,
        Result.assessment,
    )
    order = (Result.query_sha256.is_(None), Result.query_sha256, RunItem.id) if by_query else (RunItem.id,)
    statement = (
        select(*columns)
        .select_from(RunItem)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id.in_(run_ids))
        .order_by(*order)
        .execution_options(yield_per=batch)
    )
    for row in session.execute(statement):
        values = (row.ns, row.wa, row.eu, row.es)
        complete = all(value is not None for value in values)
        yield ItemRow(
            run_id=row.run_id,
            item_key=row.item_key,
            query_ref=row.query_ref,
            response_ref=row.response_ref,
            system=row.system,
            meta=row.meta,
            query_sha256=row.query_sha256,
            response_sha256=row.response_sha256,
            model_version_id=row.model_version_id,
            scores=values if complete else None,  # type: ignore[arg-type]
            avg=row.avg,
            assessment=row.assessment,
        )


def labeled_items(
    session: Session, label_set: str, run_id: int | None = None
) -> tuple[list[LabeledItem], dict[str, int]]:
    """The label set's items with their audio, and counts of labelled keys left out and why.

    Labels carry an item key, not audio; the audio is found on the run item of that key (in `run_id`
    when given). Raters are averaged per dimension; a key with a dimension nobody rated is left out.
    """
    set_id = session.scalars(select(LabelSet.id).where(LabelSet.name == label_set)).one_or_none()
    if set_id is None:
        raise NotFound(f"no label set named {label_set!r} (import one with `evalsvc labels import`)")
    averaged = (
        select(
            HumanLabel.item_key,
            func.avg(HumanLabel.ns).label("ns"),
            func.avg(HumanLabel.wa).label("wa"),
            func.avg(HumanLabel.eu).label("eu"),
            func.avg(HumanLabel.es).label("es"),
            func.count().label("raters"),
        )
        .where(HumanLabel.label_set_id == set_id)
        .group_by(HumanLabel.item_key)
        .subquery()
    )
    join = RunItem.item_key == averaged.c.item_key
    if run_id is not None:
        check_runs(session, [run_id])
        join &= RunItem.run_id == run_id
    statement = (
        select(averaged, RunItem.query_ref, RunItem.response_ref)
        .select_from(averaged)
        .outerjoin(RunItem, join)
        .order_by(averaged.c.item_key, RunItem.id)
    )
    items: dict[str, LabeledItem] = {}
    dropped: dict[str, set[str]] = {"no_run_item": set(), "incomplete_labels": set()}
    for row in session.execute(statement):
        if row.query_ref is None:
            dropped["no_run_item"].add(row.item_key)
            continue
        targets = (row.ns, row.wa, row.eu, row.es)
        if any(value is None for value in targets):
            dropped["incomplete_labels"].add(row.item_key)
            continue
        item = LabeledItem(
            row.item_key,
            row.query_ref,
            row.response_ref,
            tuple(map(float, targets)),
            row.raters,  # type: ignore[arg-type]
        )
        known = items.setdefault(item.item_key, item)
        if (known.query_ref, known.response_ref) != (item.query_ref, item.response_ref):
            raise InvalidParameter(
                f"item key {item.item_key!r} names different audio in different runs; "
                "pass --run to say which run the labels belong to"
            )
    return list(items.values()), {reason: len(keys) for reason, keys in dropped.items()}


def teacher_items(session: Session, run_id: int) -> tuple[list[LabeledItem], dict[str, int]]:
    """The scored items of a teacher run (the LLM judge's `llm-assessment`, or any judged run) as
    labelled pairs, its four scores the targets; and counts of the items left out (`unscored`:
    failed, pending, or judged without a readable score line)."""
    items: list[LabeledItem] = []
    unscored = 0
    for row in stream_items(session, [run_id]):
        if row.scores is None:
            unscored += 1
            continue
        items.append(LabeledItem(row.item_key, row.query_ref, row.response_ref, row.scores, 1))
    return items, {"unscored": unscored}
