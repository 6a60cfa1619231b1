"""Every SELECT the reports run (`evalsvc.reports`), built with SQLAlchemy Core constructs: the reports'
SQL lives in the store with the rest, and the reports never write SQL themselves.

Aggregates are left to the database (GROUP BY with count, sum and `count(*) FILTER (WHERE ...)`,
which SQLite and PostgreSQL both have), so a summary of a million results moves a few hundred rows,
not a million. Queries for whole-vector statistics select only the score columns they need.

Summaries and leaderboards read the copies of the scores (and of the model version) that each run
item holds (`ITEM_SCORE_COLUMNS`), so they scan `run_items` alone; joining a million wide result rows
took most of their time. Their cost is then a dozen aggregate steps per item and score column, so
the aggregates are kept few (no min/max, one-point histogram bins). `plan_for_aggregates` sets
PostgreSQL up for such a query.

Joins: `run_items.result_id -> results.id` (an item's result, NULL while pending or failed), and
`run_items.run_id -> runs.id` where a query spans runs and must honour the tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Select, Subquery, and_, case, func, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from evalsvc.stats import BIN_EDGES, SHIFT, Moments
from evalsvc.store import HumanLabel, ItemStatus, LabelSet, Result, Run, RunItem
from evalsvc.store.models import LLMVerdict
from evalsvc.store.scope import visible_runs

# Score columns of `results` and how reports name them (the names of the scoring API).
SCORE_COLUMNS: dict[str, InstrumentedAttribute[float | None]] = {
    "NS": Result.ns,
    "WA": Result.wa,
    "EU": Result.eu,
    "ES": Result.es,
    "avg": Result.avg,
}
# The same scores as copied onto each run item (`RunItem`), for aggregates over runs' items.
ITEM_SCORE_COLUMNS: dict[str, InstrumentedAttribute[float | None]] = {
    "NS": RunItem.ns,
    "WA": RunItem.wa,
    "EU": RunItem.eu,
    "ES": RunItem.es,
    "avg": RunItem.avg,
}
DIMENSIONS = ("NS", "WA", "EU", "ES")
HUMAN_COLUMNS: dict[str, InstrumentedAttribute[float | None]] = {
    "NS": HumanLabel.ns,
    "WA": HumanLabel.wa,
    "EU": HumanLabel.eu,
    "ES": HumanLabel.es,
}
UNKNOWN_ERROR = "unknown"

PairBy = Literal["item", "query"]
Match = Literal["item", "audio"]


# PostgreSQL's default work_mem (4 MB) makes the planner sort a million rows for GROUP BY, and the
# joins of comparisons and exports spill to disk; with this much a hash aggregate and those joins stay
# in memory (measured in bench/bench_reports.py). Set per transaction only.
REPORT_WORK_MEM = "64MB"


def plan_for_aggregates(session: Session) -> None:
    """Tune the current transaction (SET LOCAL) on PostgreSQL for aggregates over a million rows.

    More work_mem (above), and no JIT compilation: the planner's cost estimate of such a query
    crosses `jit_above_cost`, and compiling its expressions took 0.25 s, a quarter of a summary,
    which a one-pass aggregate never earns back. Nothing on SQLite.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        session.execute(text("SET LOCAL jit = off"))


def moment_columns(
    scores: dict[str, InstrumentedAttribute[float | None]], *, histogram: bool
) -> list[ColumnElement[Any]]:
    """The aggregates `moments_of` reads back, for each of `scores`, labelled `<name>_<part>`."""
    columns: list[ColumnElement[Any]] = []
    for name, column in scores.items():
        shifted = column - SHIFT
        columns += [
            func.count(column).label(f"{name}_n"),
            func.sum(shifted).label(f"{name}_sum"),
            func.sum(shifted * shifted).label(f"{name}_sumsq"),
        ]
        if histogram:
            columns += [
                func.count().filter(column < edge).label(f"{name}_below{index}")
                for index, edge in enumerate(BIN_EDGES)
            ]
    return columns


def moments_of(row: Row[Any], *, histogram: bool) -> dict[str, Moments]:
    """The `Moments` of each score column in one result row of a query with `moment_columns`."""
    values = row._mapping
    return {
        name: Moments(
            count=int(values[f"{name}_n"]),
            shifted_sum=float(values[f"{name}_sum"] or 0.0),
            shifted_sumsq=float(values[f"{name}_sumsq"] or 0.0),
            below=tuple(int(values[f"{name}_below{index}"]) for index in range(len(BIN_EDGES)))
            if histogram
            else (),
        )
        for name in SCORE_COLUMNS
    }


def error_code() -> ColumnElement[str | None]:
    """Why an item has no usable result: the failed item's last error, or its result's error (e.g. an
    assessment without a score line); NULL for pending items and clean results."""
    return case(
        (RunItem.status == ItemStatus.FAILED, func.coalesce(RunItem.last_error_code, UNKNOWN_ERROR)),
        else_=RunItem.result_error_code,
    )


def summary_cells(run_id: int) -> Select[Any]:
    """One row per (system, dataset, emotion, status, error code) of the run, with score moments.

    The finest breakdown the summary shows: the overall figures and each coarser breakdown are sums
    of these cells, so the run's items are read once, and only they: no join with `results`.
    """
    keys = (
        RunItem.system,
        RunItem.dataset,
        RunItem.emotion,
        RunItem.status,
        error_code().label("error_code"),
    )
    return (
        select(
            *keys,
            func.count().label("items"),
            func.count(RunItem.verdict).label("verdicts"),
            *moment_columns(ITEM_SCORE_COLUMNS, histogram=True),
        )
        .where(RunItem.run_id == run_id)
        .group_by(*keys)
    )


def verdict_rows(run_id: int) -> Select[Any]:
    """(system, dataset, emotion, verdict, flipped) of each judged item of an llm-mos / llm-ab run.

    The values themselves, not moments: their CIs are bootstrapped (`evalsvc.reports.figures`).
    `flipped` is NULL for MOS verdicts.
    """
    return (
        select(RunItem.system, RunItem.dataset, RunItem.emotion, RunItem.verdict, LLMVerdict.flipped)
        .join(LLMVerdict, LLMVerdict.id == RunItem.verdict_id)
        .where(RunItem.run_id == run_id, RunItem.verdict.is_not(None))
    )


def leaderboard_cells(tenant_id: int | None, run_ids: Sequence[int], dataset: str | None) -> Select[Any]:
    """One row per (dataset, system, model version) of scored items in the tenant's runs.

    `run_ids` empty means every run the tenant can see. Model versions are kept apart so a board
    can say when it mixes judges.
    """
    keys = (RunItem.dataset, RunItem.system, RunItem.model_version_id)
    query = (
        select(*keys, *moment_columns(ITEM_SCORE_COLUMNS, histogram=False))
        .select_from(RunItem)
        .join(Run, RunItem.run_id == Run.id)
        .where(visible_runs(tenant_id), RunItem.avg.is_not(None))
        .group_by(*keys)
    )
    if run_ids:
        query = query.where(RunItem.run_id.in_(run_ids))
    if dataset is not None:
        query = query.where(RunItem.dataset == dataset)
    return query


@dataclass(frozen=True)
class Side:
    """One side of a paired comparison: a run's items, optionally only one system's."""

    run_id: int
    system: str | None = None


def side_scores(side: Side, pair_by: PairBy, dataset: str | None) -> Subquery:
    """The side's scored items as (key, NS, WA, EU, ES, avg).

    Paired by item: the key is the item key (unique in a run). Paired by query: the key is the query
    audio's sha256, and a system that answered the same query more than once contributes the mean of
    its answers' scores (averaged in the GROUP BY).
    """
    condition = and_(RunItem.run_id == side.run_id, Result.avg.is_not(None))
    if side.system is not None:
        condition = and_(condition, RunItem.system == side.system)
    if dataset is not None:
        condition = and_(condition, RunItem.dataset == dataset)
    base = select().select_from(RunItem).join(Result, RunItem.result_id == Result.id).where(condition)
    if pair_by == "item":
        columns = [column.label(name) for name, column in SCORE_COLUMNS.items()]
        return base.add_columns(RunItem.item_key.label("key"), *columns).subquery()
    averaged = [func.avg(column).label(name) for name, column in SCORE_COLUMNS.items()]
    return (
        base.add_columns(Result.query_sha256.label("key"), *averaged).group_by(Result.query_sha256).subquery()
    )


def paired_scores(a: Subquery, b: Subquery) -> Select[Any]:
    """Key and both sides' scores of every key present on both sides."""
    return select(
        a.c.key,
        *(a.c[name] for name in SCORE_COLUMNS),
        *(b.c[name] for name in SCORE_COLUMNS),
    ).join_from(a, b, a.c.key == b.c.key)


def count_rows(subquery: Subquery) -> Select[Any]:
    return select(func.count()).select_from(subquery)


def human_means(label_set_id: int, match: Match) -> Subquery:
    """The label set's ratings averaged over raters, per item key or per audio pair."""
    keys = (
        (HumanLabel.item_key,) if match == "item" else (HumanLabel.query_sha256, HumanLabel.response_sha256)
    )
    query = select(
        *keys,
        *(func.avg(column).label(name) for name, column in HUMAN_COLUMNS.items()),
        func.count().label("raters"),
    ).where(HumanLabel.label_set_id == label_set_id)
    if match == "audio":
        query = query.where(HumanLabel.query_sha256.is_not(None), HumanLabel.response_sha256.is_not(None))
    return query.group_by(*keys).subquery()


def teacher_means(run_id: int, match: Match) -> Subquery:
    """A teacher run's scores shaped as `human_means` (one "rater" per item): the run's scored items
    per item key, or per audio pair (the mean where the run judged one pair under several keys)."""
    keys = (RunItem.item_key,) if match == "item" else (Result.query_sha256, Result.response_sha256)
    return (
        select(
            *keys,
            *(func.avg(column).label(name) for name, column in SCORE_COLUMNS.items() if name in DIMENSIONS),
            func.count().label("raters"),
        )
        .select_from(RunItem)
        .join(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id == run_id, Result.avg.is_not(None))
        .group_by(*keys)
        .subquery()
    )


def label_sets(tenant_id: int | None) -> Select[Any]:
    """(name, description, ratings, rated items) of every label set the tenant can see, by name."""
    query = (
        select(
            LabelSet.name,
            LabelSet.description,
            func.count(HumanLabel.id),
            func.count(func.distinct(HumanLabel.item_key)),
        )
        .outerjoin(HumanLabel, HumanLabel.label_set_id == LabelSet.id)
        .group_by(LabelSet.id, LabelSet.name, LabelSet.description)
        .order_by(LabelSet.name)
    )
    return query if tenant_id is None else query.where(LabelSet.tenant_id == tenant_id)


def labelled_pairs(run_id: int, human: Subquery, match: Match) -> Select[Any]:
    """(item key, system, model NS..avg, human NS..ES, raters) of the run's scored, labelled items."""
    if match == "item":
        on = human.c.item_key == RunItem.item_key
    else:
        on = and_(
            human.c.query_sha256 == Result.query_sha256, human.c.response_sha256 == Result.response_sha256
        )
    return (
        select(
            RunItem.item_key,
            RunItem.system,
            *(column.label(f"model_{name}") for name, column in SCORE_COLUMNS.items()),
            *(human.c[name].label(f"human_{name}") for name in DIMENSIONS),
            human.c.raters,
        )
        .select_from(RunItem)
        .join(Result, RunItem.result_id == Result.id)
        .join(human, on)
        .where(RunItem.run_id == run_id, Result.avg.is_not(None))
    )


EXPORT_COLUMNS = (
    "run_id", "item_key", "system", "dataset", "emotion", "status", "result_id", "model_version_id",
    "NS", "WA", "EU", "ES", "avg", "error_code", "assessment", "query_sha256", "response_sha256", "meta",
)  # fmt: skip
# Added after `EXPORT_COLUMNS` when an exported run is judged by llm-mos or llm-ab: the item's verdict
# (`run_items.verdict`) and whether its A/B orders disagreed (`llm_verdicts.flipped`, null for MOS).
VERDICT_EXPORT_COLUMNS = ("verdict", "flipped")


def run_judges(session: Session, run_ids: Sequence[int]) -> set[str]:
    """The judges of the runs (of those that exist)."""
    return set(session.scalars(select(Run.judge).where(Run.id.in_(run_ids)).distinct()))


def export_rows(
    run_ids: Sequence[int], *, dataset: str | None, system: str | None, verdicts: bool = False
) -> Select[Any]:
    """Every item of the runs joined with its result, in `EXPORT_COLUMNS` order (then
    `VERDICT_EXPORT_COLUMNS` with `verdicts`), run by run. A verdict item has no result: its judge
    version and clip hashes come from its verdict."""
    query_sha256, response_sha256 = Result.query_sha256, Result.response_sha256
    if verdicts:
        query_sha256 = func.coalesce(Result.query_sha256, LLMVerdict.query_sha256)
        response_sha256 = func.coalesce(Result.response_sha256, LLMVerdict.response_sha256)
    query = (
        select(
            RunItem.run_id,
            RunItem.item_key,
            RunItem.system,
            RunItem.dataset,
            RunItem.emotion,
            RunItem.status,
            RunItem.result_id,
            func.coalesce(Result.model_version_id, RunItem.model_version_id).label("model_version_id"),
            *SCORE_COLUMNS.values(),
            error_code(),
            Result.assessment,
            query_sha256.label("query_sha256"),
            response_sha256.label("response_sha256"),
            RunItem.meta,
        )
        .select_from(RunItem)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .where(RunItem.run_id.in_(run_ids))
        .order_by(RunItem.run_id, RunItem.id)
    )
    if verdicts:
        query = query.add_columns(RunItem.verdict, LLMVerdict.flipped).outerjoin(
            LLMVerdict, RunItem.verdict_id == LLMVerdict.id
        )
    if dataset is not None:
        query = query.where(RunItem.dataset == dataset)
    if system is not None:
        query = query.where(RunItem.system == system)
    return query


# Table 5 (evalsvc.reports.table5): what the finished items of a judge group's runs hold (the runs:
# `run_records.group_runs`).


def _done(run_id: int, system: str | None, dataset: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [RunItem.run_id == run_id, RunItem.status == ItemStatus.DONE]
    if system is not None:
        conditions.append(RunItem.system == system)
    if dataset is not None:
        conditions.append(RunItem.dataset == dataset)
    return conditions


def done_systems(session: Session, run_id: int, dataset: str | None) -> list[str]:
    """The systems of the run's finished items (of `dataset`)."""
    query = select(RunItem.system).where(*_done(run_id, None, dataset)).distinct()
    return [system for system in session.scalars(query) if system is not None]


def done_scores(
    session: Session, run_id: int, system: str, dataset: str | None
) -> list[tuple[float, float, float, float, float]]:
    """(NS, WA, EU, ES, avg) of each scored finished item of the system."""
    query = select(RunItem.ns, RunItem.wa, RunItem.eu, RunItem.es, RunItem.avg).where(
        *_done(run_id, system, dataset), RunItem.avg.is_not(None)
    )
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def done_verdicts(
    session: Session, run_id: int, system: str, dataset: str | None
) -> list[tuple[float, bool | None]]:
    """(verdict, flipped) of each judged finished item of the system."""
    query = (
        select(RunItem.verdict, LLMVerdict.flipped)
        .join(LLMVerdict, LLMVerdict.id == RunItem.verdict_id)
        .where(*_done(run_id, system, dataset), RunItem.verdict.is_not(None))
    )
    return [(value, flipped) for value, flipped in session.execute(query)]
