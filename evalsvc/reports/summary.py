"""Run summaries and leaderboards: GROUP BY in the database, cells merged here.

A summary reads the run once, grouped by (system, dataset, emotion, status, error code); the whole
run and each breakdown are sums of those cells (`Moments` add exactly). A run of an llm-mos or llm-ab
judge has verdicts instead of scores: its summary also reads each verdict (and A/B flip) and gives the
MOS, or the AB_Score and flip rate, of every group with a bootstrap CI (`reports.figures`, as Table 5).
A leaderboard reads
(dataset, system, model version) cells of the chosen runs and ranks the systems of each dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.judges.judges import JUDGE_IDS, JudgeSpec
from evalsvc.reports.figures import bootstrap_figures
from evalsvc.reports.schemas import (
    Figure,
    GroupSummary,
    Leaderboard,
    LeaderboardRow,
    Leaderboards,
    RunSummary,
    ScoreStats,
)
from evalsvc.stats import BIN_LABELS, Moments, describe
from evalsvc.store import ItemStatus
from evalsvc.store.report_queries import (
    SCORE_COLUMNS,
    leaderboard_cells,
    moments_of,
    plan_for_aggregates,
    summary_cells,
    verdict_rows,
)
from evalsvc.store.scope import get_run, runs_for

SORT_KEYS = ("avg", "NS", "WA", "EU", "ES", "system", "n")
# The figures of a verdict judge's summary, by judge kind: the mean verdict, and for A/B the share
# of pairs whose two presentation orders disagreed.
VERDICT_FIGURES: dict[str, tuple[str, ...]] = {"llm-mos": ("MOS",), "llm-ab": ("AB_Score", "flip_rate")}
# Each group's CI is drawn from a generator of its own with this seed, so a group's figures do not
# depend on which other groups the run has.
VERDICT_SEED = 0


@dataclass
class _Tally:
    """Running totals of one group while cells are merged."""

    histogram: bool
    items: int = 0
    failed: int = 0
    pending: int = 0
    judged: int = 0
    moments: dict[str, Moments] = field(default_factory=dict)
    verdicts: list[tuple[float, float]] = field(default_factory=list)
    """(verdict, flipped as 0/1) of each judged item, for verdict runs."""

    def add(
        self, items: int, status: ItemStatus | None, moments: dict[str, Moments], judged: int = 0
    ) -> None:
        self.items += items
        self.judged += judged
        self.failed += items if status == ItemStatus.FAILED else 0
        self.pending += items if status == ItemStatus.PENDING else 0
        for name, value in moments.items():
            self.moments[name] = self.moments.get(name, Moments.empty(histogram=self.histogram)) + value

    def scores(self) -> dict[str, ScoreStats]:
        empty = Moments.empty(histogram=self.histogram)
        return {name: ScoreStats.of(describe(self.moments.get(name, empty))) for name in SCORE_COLUMNS}

    def figures(self, names: tuple[str, ...]) -> dict[str, Figure]:
        """The verdict figures `names` (VERDICT_FIGURES) over this group's judged items."""
        if not names:
            return {}
        values = np.array(self.verdicts, dtype=np.float64).reshape(-1, 2)[:, : len(names)]
        figures = bootstrap_figures(values, np.random.default_rng(VERDICT_SEED))
        return dict(zip(names, figures, strict=True))

    def summary(self, key: str | None, verdict_figures: tuple[str, ...] = ()) -> GroupSummary:
        scored = self.moments["avg"].count if "avg" in self.moments else 0
        return GroupSummary(
            key=key,
            items=self.items,
            scored=scored + self.judged,
            failed=self.failed,
            pending=self.pending,
            scores=self.scores(),
            verdicts=self.figures(verdict_figures),
        )


def run_summary(session: Session, run_id: int, tenant_id: int | None) -> RunSummary:
    """Counts, per-dimension mean with 95% CI, distribution and failures of one run, with breakdowns."""
    run = get_run(session, run_id, tenant_id=tenant_id)
    plan_for_aggregates(session)
    overall = _Tally(histogram=True)
    by: dict[str, dict[str | None, _Tally]] = {name: {} for name in ("system", "dataset", "emotion")}
    errors: dict[str, int] = defaultdict(int)
    for row in session.execute(summary_cells(run_id)):
        moments = moments_of(row, histogram=True)
        overall.add(row.items, row.status, moments, row.verdicts)
        for name, groups in by.items():
            key = getattr(row, name)
            groups.setdefault(key, _Tally(histogram=True)).add(row.items, row.status, moments, row.verdicts)
        if row.error_code is not None:
            errors[row.error_code] += row.items
    names = verdict_figures(run.judge)
    if names:
        # A second statement: on a run still being judged it may see an item the first did not, or
        # an emotion label recorded since (an +emotion judge fills it in), hence a group of its own.
        for row in session.execute(verdict_rows(run_id)):
            value = (row.verdict, float(bool(row.flipped)))
            overall.verdicts.append(value)
            for name, groups in by.items():
                groups.setdefault(getattr(row, name), _Tally(histogram=True)).verdicts.append(value)
    return RunSummary(
        run_id=run.id,
        run_name=run.name,
        mode=run.mode,
        judge=run.judge,
        status=str(run.status.value),
        histogram_bins=list(BIN_LABELS),
        overall=overall.summary(None, names),
        errors=dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
        by_system=_groups(by["system"], names),
        by_dataset=_groups(by["dataset"], names),
        by_emotion=_groups(by["emotion"], names),
    )


def verdict_figures(judge: str) -> tuple[str, ...]:
    """What a summary of the judge's run reports besides scores: nothing for EmpathyEval and
    llm-assessment (their results carry scores)."""
    if judge not in JUDGE_IDS:
        return ()
    return VERDICT_FIGURES.get(JudgeSpec.parse(judge).kind, ())


def _groups(tallies: dict[str | None, _Tally], verdict_figures: tuple[str, ...]) -> list[GroupSummary]:
    """Groups by name, the unnamed group (items without the label) last."""
    ordered = sorted(tallies.items(), key=lambda item: (item[0] is None, item[0] or ""))
    return [tally.summary(key, verdict_figures) for key, tally in ordered]


def leaderboards(
    session: Session,
    tenant_id: int | None,
    *,
    run_ids: Sequence[int] = (),
    dataset: str | None = None,
    sort: str = "avg",
) -> Leaderboards:
    """One leaderboard per dataset (or just `dataset`) over the runs (default: all the caller's).

    Systems are ranked by `sort`: a score's mean, highest first (systems without scores last), or
    "system" (by name) or "n" (most scored items first). An item scored in two of the runs counts
    twice: pick the runs to avoid it.
    """
    if sort not in SORT_KEYS:
        raise InvalidParameter(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    runs_for(session, run_ids, tenant_id)  # every run asked for must exist and be the caller's
    plan_for_aggregates(session)
    systems: dict[str | None, dict[str | None, _Tally]] = defaultdict(dict)
    versions: dict[str | None, set[int]] = defaultdict(set)
    for row in session.execute(leaderboard_cells(tenant_id, run_ids, dataset)):
        tally = systems[row.dataset].setdefault(row.system, _Tally(histogram=False))
        tally.add(0, None, moments_of(row, histogram=False))
        versions[row.dataset].add(row.model_version_id)
    boards = [
        Leaderboard(
            dataset=name,
            model_versions=sorted(versions[name]),
            rows=_ranked(systems[name].items(), sort),
        )
        for name in sorted(systems, key=lambda key: (key is None, key or ""))
    ]
    return Leaderboards(runs=list(dict.fromkeys(run_ids)), sort=sort, leaderboards=boards)


def _ranked(tallies: Iterable[tuple[str | None, _Tally]], sort: str) -> list[LeaderboardRow]:
    rows = sorted(((system, tally.scores()) for system, tally in tallies), key=lambda row: _order(sort, *row))
    return [
        LeaderboardRow(rank=rank, system=system, n=scores["avg"].n, scores=scores)
        for rank, (system, scores) in enumerate(rows, start=1)
    ]


def _order(sort: str, system: str | None, scores: dict[str, ScoreStats]) -> tuple[Any, ...]:
    by_name = (system is None, system or "")
    if sort == "system":
        return by_name
    if sort == "n":
        return (-scores["avg"].n, *by_name)
    mean = scores[sort].mean
    return (mean is None, -(mean or 0.0), *by_name)
