"""Paired comparison of two systems or runs on the same items (the paper's A/B tests, from scores).

Sides and pairing:

- two runs, no systems (`--run A --run B`): the same items judged twice (two judge versions, or two
  systems' manifests that share item ids); paired by item key.
- one run, two systems (`--run R --system X --system Y`), or two runs with one system each: two
  systems' answers to the same spoken queries; paired by the query audio's sha256, since each
  system's items have keys of their own. A system with several answers to one query contributes
  their mean.

`pair_by` overrides the default (query when the sides name different systems, item otherwise).

Per dimension (A minus B): mean difference with a percentile bootstrap 95% CI (items resampled
jointly for all dimensions), win/tie/loss shares with a tie margin, the AB score (mean of +1/0/-1)
with its bootstrap CI, and the two-sided Wilcoxon signed-rank p-value. Pairs are sorted by key
before resampling, so a seed gives the same CI on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.reports.schemas import Comparison, DimensionComparison, SideRef
from evalsvc.stats import bootstrap_means, percentile_interval, wilcoxon_p
from evalsvc.store.report_queries import SCORE_COLUMNS, PairBy, Side, count_rows, paired_scores, side_scores
from evalsvc.store.scope import get_run

DEFAULT_RESAMPLES = 10_000
MAX_RESAMPLES = 100_000
# A tenth of a point on the 1-5 scale: smaller differences between continuous head scores are noise.
DEFAULT_TIE_MARGIN = 0.1
_NAMES = tuple(SCORE_COLUMNS)


def sides(run_ids: Sequence[int], systems: Sequence[str]) -> tuple[Side, Side]:
    """The two sides from the `--run` / `--system` flags (or `run` / `system` query parameters).

    One run and two systems; two runs (and no system, one system for both, or one system each).
    """
    runs, names = list(run_ids), list(systems)
    if len(runs) == 1 and len(names) == 2:
        return Side(runs[0], names[0]), Side(runs[0], names[1])
    if len(runs) == 2 and not names:
        return Side(runs[0]), Side(runs[1])
    if len(runs) == 2 and len(names) <= 2:
        return Side(runs[0], names[0]), Side(runs[1], names[-1])  # one name: the same system in both
    raise InvalidParameter(
        "give two runs (and optionally one system, or one system per run), or one run and two systems; "
        f"got {len(runs)} run(s) and {len(names)} system(s)"
    )


def compare(
    session: Session,
    tenant_id: int | None,
    a: Side,
    b: Side,
    *,
    pair_by: PairBy | None = None,
    dataset: str | None = None,
    tie_margin: float = DEFAULT_TIE_MARGIN,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Side A against side B on their paired items (see the module docstring for pairing and figures)."""
    if a == b:
        raise InvalidParameter("compare two different runs, or two different systems")
    if not 0.0 <= tie_margin <= 4.0:
        raise InvalidParameter(f"the tie margin must lie in 0-4 (score points), not {tie_margin}")
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise InvalidParameter(f"resamples must lie in 1-{MAX_RESAMPLES}, not {resamples}")
    if seed < 0:
        raise InvalidParameter(f"the seed must be 0 or more, not {seed}")
    get_run(session, a.run_id, tenant_id=tenant_id)
    get_run(session, b.run_id, tenant_id=tenant_id)
    pair_by = pair_by or ("query" if a.system != b.system else "item")
    side_a, side_b = side_scores(a, pair_by, dataset), side_scores(b, pair_by, dataset)
    rows = sorted(session.execute(paired_scores(side_a, side_b)), key=lambda row: row[0])
    count_a = session.scalar(count_rows(side_a)) or 0
    count_b = session.scalar(count_rows(side_b)) or 0
    scores = np.array([row[1:] for row in rows], dtype=np.float64).reshape(len(rows), 2 * len(_NAMES))
    scores = scores[~np.isnan(scores).any(axis=1)]  # a pair counts only with every score on both sides
    return Comparison(
        a=SideRef(run_id=a.run_id, system=a.system),
        b=SideRef(run_id=b.run_id, system=b.system),
        pair_by=pair_by,
        dataset=dataset,
        pairs=len(scores),
        unmatched_a=count_a - len(rows),
        unmatched_b=count_b - len(rows),
        tie_margin=tie_margin,
        resamples=resamples,
        seed=seed,
        dimensions=_dimensions(
            scores[:, : len(_NAMES)], scores[:, len(_NAMES) :], tie_margin, resamples, seed
        ),
    )


def _dimensions(
    a: np.ndarray, b: np.ndarray, tie_margin: float, resamples: int, seed: int
) -> dict[str, DimensionComparison]:
    n = len(a)
    differences = a - b
    signs = np.sign(differences) * (np.abs(differences) > tie_margin)
    low = high = np.full(2 * len(_NAMES), np.nan)
    if n >= 2:  # one pair resamples to itself: no interval to speak of
        rng = np.random.Generator(np.random.SFC64(seed))  # the fastest of numpy's generators: 1e8 draws
        samples = bootstrap_means(np.hstack([differences, signs]), resamples, rng)
        low, high = percentile_interval(samples)
    result = {}
    for index, name in enumerate(_NAMES):
        column = signs[:, index]
        ab = len(_NAMES) + index
        result[name] = DimensionComparison(
            mean_a=_mean(a[:, index]),
            mean_b=_mean(b[:, index]),
            mean_difference=_mean(differences[:, index]),
            ci_low=_value(low[index]),
            ci_high=_value(high[index]),
            win=_mean(column > 0),
            tie=_mean(column == 0),
            loss=_mean(column < 0),
            ab_score=_mean(column),
            ab_ci_low=_value(low[ab]),
            ab_ci_high=_value(high[ab]),
            wilcoxon_p=wilcoxon_p(differences[:, index]),
        )
    return result


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def _value(number: float) -> float | None:
    return None if np.isnan(number) else float(number)
