"""Agreement of the judge with human ratings, in the layout of the paper's Table 4.

Labels attach to a run's results in one of two ways (`match`):

- "item" (default): a label's id is the item key of the run's manifest, so ratings collected for a
  dataset's ids apply to any run of that dataset's manifest.
- "audio": a label carries the sha256 of the query and response audio (filled in at import from a
  run, `evalsvc labels import --run`); it then applies to every run that judged the same audio, whatever
  its item keys.

Several raters of one item are averaged per dimension (in SQL) before anything is compared.

Instead of a label set, the reference can be a teacher run (`teacher_scores`): another run's four
scores (the LLM judge's `llm-assessment`, or the judge a new adapter and heads were distilled from),
matched by item key or audio the same way and taking the human side of every figure, with one
"rater" per item. Its name in the report is `run N`.

Rows: NS, WA, EU, ES; "avg" (the judge's avg against the mean of the four human dimensions); and
"overall", every (item, dimension) pair of the four dimensions pooled into one vector. Columns:
utterance level (one point per item) and system level (one point per system: the mean over its
matched items of the judge's scores and of the human scores, as in the paper). Each cell gives
LCC (Pearson), SRCC (Spearman), KTAU (Kendall tau-b) and MSE.

One rule for every row: a correlation needs at least three items (utterance level) or three systems
(system level). Pooling the four dimensions makes "overall" 4 points per item or system, but 8
points from 2 systems are still 2 systems, so its correlations are left out as the other rows' are;
the MSE is given whenever there is a point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import Subquery
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.reports.schemas import AgreementFigures, AgreementReport, AgreementRow, SystemMeans
from evalsvc.stats import MIN_CORRELATION_POINTS, agreement
from evalsvc.store.report_queries import (
    DIMENSIONS,
    SCORE_COLUMNS,
    Match,
    count_rows,
    human_means,
    labelled_pairs,
    teacher_means,
)
from evalsvc.store.scope import get_run, label_set_for

ROWS = (*DIMENSIONS, "avg", "overall")


@dataclass(frozen=True)
class LabelledScores:
    """The run's scored items that carry human ratings, as vectors (the scatter plot reads them too).

    `model` holds NS..ES and avg; `human` holds NS..ES and avg (the mean of the four, NaN when a
    dimension was not rated). Missing values are NaN.
    """

    run_id: int
    label_set: str
    match: Match
    labelled: int
    systems: list[str | None]
    model: dict[str, np.ndarray]
    human: dict[str, np.ndarray]
    raters: np.ndarray


def labelled_scores(
    session: Session, run_id: int, label_set: str, tenant_id: int | None, match: Match = "item"
) -> LabelledScores:
    get_run(session, run_id, tenant_id=tenant_id)
    labels = label_set_for(session, label_set, tenant_id)
    return _scores_against(session, run_id, labels.name, human_means(labels.id, match), match)


def teacher_scores(
    session: Session, run_id: int, teacher_run_id: int, tenant_id: int | None, match: Match = "item"
) -> LabelledScores:
    """The run's scores beside a teacher run's, in the shape of `labelled_scores` (the teacher in
    `human`), for `agreement_report`."""
    get_run(session, run_id, tenant_id=tenant_id)
    get_run(session, teacher_run_id, tenant_id=tenant_id)
    scores = _scores_against(
        session, run_id, f"run {teacher_run_id}", teacher_means(teacher_run_id, match), match
    )
    if not scores.systems:
        raise InvalidParameter(
            f"no scored item of run {run_id} matches a scored item of teacher run {teacher_run_id} "
            f"by {'item key' if match == 'item' else 'audio'} ({scores.labelled} teacher items scored): "
            "did both runs judge the same manifest?"
        )
    return scores


def _scores_against(
    session: Session, run_id: int, name: str, human: Subquery, match: Match
) -> LabelledScores:
    rows = sorted(session.execute(labelled_pairs(run_id, human, match)), key=lambda row: row[0])
    values = np.array([row[2:-1] for row in rows], dtype=np.float64).reshape(len(rows), 9)
    model = {name: values[:, index] for index, name in enumerate(SCORE_COLUMNS)}
    human_scores = {name: values[:, 5 + index] for index, name in enumerate(DIMENSIONS)}
    human_scores["avg"] = np.mean(values[:, 5:], axis=1) if rows else np.empty(0)
    return LabelledScores(
        run_id=run_id,
        label_set=name,
        match=match,
        labelled=session.scalar(count_rows(human)) or 0,
        systems=[row[1] for row in rows],
        model=model,
        human=human_scores,
        raters=np.array([row[-1] for row in rows], dtype=np.float64),
    )


def agreement_report(scores: LabelledScores) -> AgreementReport:
    systems = sorted(set(scores.systems), key=lambda name: (name is None, name or ""))
    per_system = [_system_means(scores, system) for system in systems]
    rows = []
    for row in ROWS:
        names = DIMENSIONS if row == "overall" else (row,)
        utterance = _pooled([(scores.model[name], scores.human[name]) for name in names])
        system_level = _pooled(
            [
                (
                    np.array([means.model[name] for means in per_system], dtype=np.float64),
                    np.array([means.human[name] for means in per_system], dtype=np.float64),
                )
                for name in names
            ]
        )
        rows.append(AgreementRow(dimension=row, utterance=utterance, system=system_level))
    return AgreementReport(
        run_id=scores.run_id,
        label_set=scores.label_set,
        match=scores.match,
        labelled=scores.labelled,
        matched=len(scores.systems),
        mean_raters=float(np.mean(scores.raters)) if scores.raters.size else None,
        rows=rows,
        systems=per_system,
    )


def _pooled(pairs: list[tuple[np.ndarray, np.ndarray]]) -> AgreementFigures:
    """Agreement over the concatenation of (judge, human) vectors, skipping pairs with a gap.

    Every vector has one entry per unit (item or system, in the same order); the correlations are
    given only when at least `MIN_CORRELATION_POINTS` units have a pair, however many points the
    pooling made of them.
    """
    valid = [~(np.isnan(model) | np.isnan(human)) for model, human in pairs]
    model = np.concatenate([pair[0][mask] for pair, mask in zip(pairs, valid, strict=True)])
    human = np.concatenate([pair[1][mask] for pair, mask in zip(pairs, valid, strict=True)])
    figures = agreement(model, human)
    units = int(np.logical_or.reduce(valid).sum()) if valid and valid[0].size else 0
    if units < MIN_CORRELATION_POINTS:
        figures = replace(figures, lcc=None, srcc=None, ktau=None)
    return AgreementFigures.of(figures)


def _system_means(scores: LabelledScores, system: str | None) -> SystemMeans:
    """The system's mean judge and human score per dimension, over its items rated on that dimension."""
    mine = np.array([name == system for name in scores.systems], dtype=bool)
    model: dict[str, float | None] = {}
    human: dict[str, float | None] = {}
    for name in (*DIMENSIONS, "avg"):
        both = mine & ~(np.isnan(scores.model[name]) | np.isnan(scores.human[name]))
        model[name] = float(np.mean(scores.model[name][both])) if both.any() else None
        human[name] = float(np.mean(scores.human[name][both])) if both.any() else None
    return SystemMeans(system=system, n=int(mine.sum()), model=model, human=human)
