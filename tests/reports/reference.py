"""Reference implementations from the definitions, independent of the code under test."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats as scipy_stats


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their positions."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / math.sqrt((dx * dx).sum() * (dy * dy).sum()))


def tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b over all pairs: (concordant - discordant) / sqrt((n0 - n1)(n0 - n2))."""
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(x.size, k=1)
    s = (sx * sy)[upper].sum()
    pairs_x = (sx[upper] != 0).sum()
    pairs_y = (sy[upper] != 0).sum()
    return float(s / math.sqrt(pairs_x * pairs_y))


def exact_wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided p by enumerating all 2^n sign patterns of the ranks (no ties, no zeros)."""
    ranks = average_ranks(np.abs(differences))
    observed = ranks[differences > 0].sum()
    n = differences.size
    total = n * (n + 1) / 2
    sums = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=n)
        ]
    )
    extreme = min(observed, total - observed)
    return float(min(1.0, 2 * np.mean(sums <= extreme + 1e-9)))


def normal_wilcoxon_p(differences: np.ndarray) -> float:
    """The normal approximation with the tie-corrected variance, zeros dropped, no continuity term."""
    d = differences[differences != 0]
    n = d.size
    ranks = average_ranks(np.abs(d))
    statistic = ranks[d > 0].sum()
    _, counts = np.unique(np.abs(d), return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - (counts**3 - counts).sum() / 48
    z = (statistic - n * (n + 1) / 4) / math.sqrt(variance)
    return float(2 * scipy_stats.norm.sf(abs(z)))
