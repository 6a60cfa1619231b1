"""Statistics on plain arrays, kept apart from SQL so each is testable: the reports' figures and the
agreement that head fitting reports on its validation split.

Two kinds live here:

- Mergeable moments (`Moments`): what one SQL GROUP BY row returns for one score column (count,
  shifted sum, shifted sum of squares, cumulative histogram counts). Cells add up exactly,
  so one query grouped by the finest breakdown yields the overall figures and every coarser breakdown
  without another pass over the table. `describe` turns moments into mean, sample standard deviation
  and a t-distribution 95% CI.
- Whole-vector statistics (paired bootstrap, Wilcoxon signed-rank, LCC/SRCC/KTAU/MSE), which need
  every value: callers fetch just the columns they need and pass numpy arrays.

Every figure that is undefined for the data at hand (a CI of one value, a correlation of a constant
vector) is None, never NaN: NaN is not JSON and reads as a bug.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# Scores live on a 1-5 scale; summing x - 3 instead of x keeps the sum of squares small, so the
# variance computed from it (sumsq - sum^2 / n) does not lose digits to cancellation.
SHIFT = 3.0
# Histogram bins one point wide, centred on the five rating values (as a MOS histogram); the outer
# bins are open (regression heads may stray outside 1-5), so every value lands in exactly one bin.
# Each edge costs one conditional count per score column in SQL, which is why the bins are not finer.
BIN_EDGES: tuple[float, ...] = (1.5, 2.5, 3.5, 4.5)
BIN_LABELS: tuple[str, ...] = (
    "<1.5",
    *(f"{low}-{high}" for low, high in itertools.pairwise(BIN_EDGES)),
    ">=4.5",
)
CONFIDENCE = 0.95
# Rank and linear correlations of fewer points are reported as None: two points always correlate +-1.
MIN_CORRELATION_POINTS = 3
# Cells (resamples x items) drawn per bootstrap chunk: 8 MiB of int64 indices, whatever n is.
_BOOTSTRAP_CHUNK_CELLS = 1 << 20
# Exact Wilcoxon p-values up to this many non-zero differences without ties (scipy's own cut-off).
_WILCOXON_EXACT_MAX = 50


@dataclass(frozen=True)
class Moments:
    """Aggregates of one score column over one group of rows, as the database returns them.

    `below` holds, for each edge of `BIN_EDGES`, how many values are smaller than it (cumulative:
    one comparison per edge in SQL rather than a range test per bin); empty when not asked for.
    """

    count: int
    shifted_sum: float
    shifted_sumsq: float
    below: tuple[int, ...] = ()

    @classmethod
    def empty(cls, *, histogram: bool) -> Moments:
        return cls(0, 0.0, 0.0, (0,) * len(BIN_EDGES) if histogram else ())

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.count + other.count,
            self.shifted_sum + other.shifted_sum,
            self.shifted_sumsq + other.shifted_sumsq,
            tuple(a + b for a, b in zip(self.below, other.below, strict=True)),
        )

    @property
    def histogram(self) -> list[int]:
        """Counts per bin of `BIN_LABELS`; empty when the query asked for no histogram."""
        if not self.below:
            return []
        cumulative = [0, *self.below, self.count]
        return [high - low for low, high in itertools.pairwise(cumulative)]


@dataclass(frozen=True)
class Description:
    """Mean, spread and the 95% CI of the mean of one column; None where the data cannot tell."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    histogram: list[int]


def describe(moments: Moments) -> Description:
    """Mean with a t-distribution 95% CI (the CI and standard deviation need at least two values)."""
    n = moments.count
    if n == 0:
        return Description(0, None, None, None, None, moments.histogram)
    mean = SHIFT + moments.shifted_sum / n
    std = ci_low = ci_high = None
    if n >= 2:
        variance = max(0.0, (moments.shifted_sumsq - moments.shifted_sum**2 / n) / (n - 1))
        std = math.sqrt(variance)
        half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        ci_low, ci_high = mean - half, mean + half
    return Description(n, mean, std, ci_low, ci_high, moments.histogram)


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of every column over `resamples` bootstrap resamples of the rows: (resamples, columns).

    All columns share each resample (a paired design resamples items, not values). A resample is
    drawn as n row indices, counted per row with one `bincount` for a whole chunk of resamples, and
    the means of all columns are then one matrix product (counts @ values): no Python loop per
    resample and no (resamples x n x columns) gather, in memory bounded by the chunk size.
    """
    n, columns = values.shape
    means = np.empty((resamples, columns))
    if n == 0:
        means.fill(np.nan)
        return means
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        indices = rng.integers(0, n, size=(size, n))
        indices += (np.arange(size) * n)[:, None]  # row r of the chunk counts into bins r*n .. r*n+n-1
        counts = np.bincount(indices.ravel(), minlength=size * n).reshape(size, n)
        means[start : start + size] = counts.astype(np.float64) @ values / n
    return means


def percentile_interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central 95% of bootstrap samples per column (the percentile interval)."""
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return low, high


def wilcoxon_p(differences: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; None when there is nothing to test.

    Zero differences are dropped (Wilcoxon's original treatment). With at most 50 non-zero
    differences and no tied magnitudes the p-value is exact; otherwise it is the normal
    approximation with the tie correction of the variance (no continuity correction). The method is
    chosen here rather than left to scipy's "auto", whose rules change between versions.
    """
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return None
    tied = np.unique(np.abs(nonzero)).size < nonzero.size
    method = "exact" if nonzero.size <= _WILCOXON_EXACT_MAX and not tied else "approx"
    result = scipy_stats.wilcoxon(nonzero, method=method)
    return _finite(float(result.pvalue))


@dataclass(frozen=True)
class Agreement:
    """How far two score vectors agree: the paper's LCC, SRCC, KTAU (tau-b) and MSE."""

    n: int
    lcc: float | None
    srcc: float | None
    ktau: float | None
    mse: float | None


def agreement(predicted: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> Agreement:
    """Pearson, Spearman and Kendall tau-b (ties handled) correlations and the mean squared error."""
    x = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    n = int(x.size)
    mse = float(np.mean((x - y) ** 2)) if n else None
    if n < MIN_CORRELATION_POINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Agreement(n, None, None, None, mse)
    return Agreement(
        n,
        _finite(float(scipy_stats.pearsonr(x, y).statistic)),
        _finite(float(scipy_stats.spearmanr(x, y).statistic)),
        _finite(float(scipy_stats.kendalltau(x, y).statistic)),
        mse,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
