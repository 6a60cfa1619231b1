"""The paper's Table 5: every system under the three judges side by side, each figure with its CI.

    system | EmpathyEval NS WA EU ES Avg | LLM AB_Score MOS | LLM+emotion AB_Score MOS | flip rates

A manifest judged by several judges is one run per judge linked by `runs.group_id`; given any run of
the group (or several runs), the report finds its siblings and reads each judge's run: EmpathyEval's
scores and the LLM verdicts are the copies on `run_items` (`verdict`), the A/B flips come from
`llm_verdicts`. Each mean has a percentile bootstrap 95% CI (`evalsvc.reports.figures` on
`evalsvc.stats`), resampled over the items
of the system; the flip rate is the share of judged A/B pairs whose two orders disagreed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.reports.figures import bootstrap_figures
from evalsvc.reports.schemas import Figure, ReportBase
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.report_queries import done_scores, done_systems, done_verdicts
from evalsvc.store.run_records import group_runs
from evalsvc.store.scope import get_run

EMPATHYEVAL_COLUMNS = ("NS", "WA", "EU", "ES", "avg")
LLM_COLUMNS: dict[str, tuple[str, str]] = {
    "LLM": ("llm-ab", "llm-mos"),
    "LLM+emotion": ("llm-ab+emotion", "llm-mos+emotion"),
}


class Table5Row(ReportBase):
    system: str
    empathyeval: dict[str, Figure]
    """NS, WA, EU, ES, avg."""
    llm: dict[str, dict[str, Figure]]
    """'LLM' / 'LLM+emotion' -> 'AB_Score', 'MOS', 'flip_rate'."""


class Table5(ReportBase):
    runs: dict[str, int]
    """judge id -> the run it was read from."""
    dataset: str | None
    rows: list[Table5Row]


def table5(
    session: Session,
    run_ids: Sequence[int],
    tenant_id: int | None,
    *,
    dataset: str | None = None,
    seed: int = 0,
) -> Table5:
    """Table 5 over the runs' judge groups. Two runs with the same judge are refused (which one?)."""
    if not run_ids:
        raise InvalidParameter("give a run (--run RUN): any run of a group judged by several judges")
    runs = _group_runs(session, run_ids, tenant_id)
    rng = np.random.default_rng(seed)
    systems = sorted(
        {system for run_id in runs.values() for system in done_systems(session, run_id, dataset)}
    )
    if not systems:
        raise InvalidParameter(f"the runs {', '.join(map(str, runs.values()))} have no judged item")
    rows = []
    for system in systems:
        scores = (
            _scores(session, runs[EMPATHYEVAL_JUDGE], system, dataset)
            if EMPATHYEVAL_JUDGE in runs
            else np.empty((0, 5))
        )
        empathyeval = dict(zip(EMPATHYEVAL_COLUMNS, bootstrap_figures(scores, rng), strict=True))
        llm: dict[str, dict[str, Figure]] = {}
        for column, (ab_judge, mos_judge) in LLM_COLUMNS.items():
            ab = _verdicts(session, runs.get(ab_judge), system, dataset)
            mos = _verdicts(session, runs.get(mos_judge), system, dataset)
            [ab_score, flip_rate] = bootstrap_figures(ab, rng)
            [mos_score] = bootstrap_figures(mos[:, :1], rng)
            llm[column] = {"AB_Score": ab_score, "MOS": mos_score, "flip_rate": flip_rate}
        rows.append(Table5Row(system=system, empathyeval=empathyeval, llm=llm))
    return Table5(runs=runs, dataset=dataset, rows=rows)


def _group_runs(session: Session, run_ids: Sequence[int], tenant_id: int | None) -> dict[str, int]:
    found: dict[str, int] = {}
    for run_id in dict.fromkeys(run_ids):
        run = get_run(session, run_id, tenant_id=tenant_id)
        for member in group_runs(session, run, tenant_id):
            if found.get(member.judge, member.id) != member.id:
                raise InvalidParameter(
                    f"runs {found[member.judge]} and {member.id} are both judged by {member.judge}: give one"
                )
            found[member.judge] = member.id
    return found


def _scores(session: Session, run_id: int, system: str, dataset: str | None) -> np.ndarray:
    return np.array(done_scores(session, run_id, system, dataset), dtype=np.float64).reshape(-1, 5)


def _verdicts(session: Session, run_id: int | None, system: str, dataset: str | None) -> np.ndarray:
    """(verdict, flipped as 0/1) per judged item of the system; no rows without the run."""
    if run_id is None:
        return np.empty((0, 2))
    rows = [
        (value, float(bool(flipped))) for value, flipped in done_verdicts(session, run_id, system, dataset)
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)
