"""Means of per-item values with percentile-bootstrap 95% CIs: the figures of the LLM judges' verdicts
(MOS, AB_Score, flip rate) wherever a report shows them (Table 5, run summaries).

Verdicts are small integers (1-5, or -1/0/1) whose distribution is far from normal, which is why their
CIs are bootstrapped over the items rather than read off a t-distribution like EmpathyEval's scores.
"""

from __future__ import annotations

import numpy as np

from evalsvc.reports.schemas import Figure
from evalsvc.stats import bootstrap_means, percentile_interval

RESAMPLES = 2000


def bootstrap_figures(values: np.ndarray, rng: np.random.Generator) -> list[Figure]:
    """Mean and bootstrap CI of every column of `values` (items x columns); a CI needs two items."""
    n = values.shape[0]
    if n == 0:
        return [Figure(n=0, mean=None, ci_low=None, ci_high=None) for _ in range(values.shape[1])]
    means = values.mean(axis=0)
    if n < 2:
        return [Figure(n=n, mean=float(mean), ci_low=None, ci_high=None) for mean in means]
    low, high = percentile_interval(bootstrap_means(values, RESAMPLES, rng))
    return [
        Figure(n=n, mean=float(mean), ci_low=float(lo), ci_high=float(hi))
        for mean, lo, hi in zip(means, low, high, strict=True)
    ]
