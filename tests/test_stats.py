"""The statistics on plain arrays, each against an independent numpy/scipy computation.

Ranks, tau-b and the Wilcoxon distribution are recomputed here from their definitions (average ranks
by hand, tau-b over all O(n^2) pairs, the exact signed-rank null distribution by enumeration), not
with the scipy functions the code calls.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from evalsvc.stats import (
    BIN_EDGES,
    SHIFT,
    Moments,
    agreement,
    bootstrap_means,
    describe,
    percentile_interval,
    wilcoxon_p,
)
from tests.reports.reference import average_ranks, exact_wilcoxon_p, normal_wilcoxon_p, pearson, tau_b


def moments(values: np.ndarray) -> Moments:
    """What the SQL aggregates return for `values`."""
    shifted = values - SHIFT
    return Moments(
        count=values.size,
        shifted_sum=float(shifted.sum()),
        shifted_sumsq=float((shifted * shifted).sum()),
        below=tuple(int((values < edge).sum()) for edge in BIN_EDGES),
    )


@pytest.mark.parametrize("n", [2, 3, 17, 500])
def test_describe_matches_numpy_and_the_t_interval(n: int) -> None:
    values = np.round(np.random.default_rng(n).uniform(1, 5, n), 2)
    described = describe(moments(values))
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert described.n == n
    assert described.mean == pytest.approx(values.mean(), abs=1e-12)
    assert described.std == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert (described.ci_low, described.ci_high) == (
        pytest.approx(low, rel=1e-9),
        pytest.approx(high, rel=1e-9),
    )
    expected, _ = np.histogram(np.clip(values, 1, 5), bins=[1.0, *BIN_EDGES, 5.0])
    assert described.histogram == expected.tolist()


def test_moments_of_parts_add_up_to_the_moments_of_the_whole() -> None:
    values = np.random.default_rng(7).uniform(0.5, 5.5, 1000)  # also outside 1-5: the open outer bins
    parts = np.array_split(values, 7)
    merged = sum((moments(part) for part in parts), Moments.empty(histogram=True))
    whole = describe(moments(values))
    assert describe(merged).mean == pytest.approx(whole.mean, abs=1e-12)
    assert describe(merged).std == pytest.approx(whole.std, rel=1e-9)
    assert describe(merged).histogram == whole.histogram
    assert sum(whole.histogram) == values.size


def test_no_value_and_one_value_give_what_they_can() -> None:
    empty = describe(Moments.empty(histogram=True))
    assert (empty.n, empty.mean, empty.std, empty.ci_low, empty.ci_high) == (0, None, None, None, None)
    assert empty.histogram == [0] * (len(BIN_EDGES) + 1)
    one = describe(moments(np.array([4.25])))
    assert (one.n, one.mean, one.std, one.ci_low, one.ci_high) == (1, 4.25, None, None, None)


def test_the_variance_does_not_lose_digits_on_a_million_close_values() -> None:
    values = 4.0 + np.random.default_rng(0).normal(0, 1e-4, 1_000_000)
    assert describe(moments(values)).std == pytest.approx(values.std(ddof=1), rel=1e-6)


def test_bootstrap_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.2, 1.0, size=(400, 2))
    samples = bootstrap_means(values, 10_000, np.random.default_rng(0))
    low, high = percentile_interval(samples)
    for column in range(2):
        reference = scipy_stats.bootstrap(
            (values[:, column],), np.mean, n_resamples=10_000, method="percentile", random_state=1
        ).confidence_interval
        # Two independent Monte Carlo estimates of the same quantiles.
        assert low[column] == pytest.approx(reference.low, abs=0.015)
        assert high[column] == pytest.approx(reference.high, abs=0.015)
    # The bootstrap distribution of the mean: centred on the mean, spread sd / sqrt(n).
    assert samples.mean(axis=0) == pytest.approx(values.mean(axis=0), abs=0.005)
    assert samples.std(axis=0) == pytest.approx(values.std(axis=0) / math.sqrt(400), rel=0.05)


def test_bootstrap_resamples_rows_jointly_and_exactly() -> None:
    """Columns share resamples (identical columns give identical means), and with n=2 the
    resampled means take exactly the values 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4."""
    values = np.array([[0.0, 0.0], [1.0, 1.0]])
    samples = bootstrap_means(values, 40_000, np.random.default_rng(5))
    assert np.array_equal(samples[:, 0], samples[:, 1])
    shares = [np.mean(samples[:, 0] == value) for value in (0.0, 0.5, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.01)


def test_bootstrap_is_reproducible_and_chunk_boundaries_do_not_matter() -> None:
    values = np.random.default_rng(1).normal(size=(50_000, 1))  # 83 resamples per chunk
    first = bootstrap_means(values, 200, np.random.default_rng(9))
    again = bootstrap_means(values, 200, np.random.default_rng(9))
    assert np.array_equal(first, again)
    assert first.std() == pytest.approx(1 / math.sqrt(50_000), rel=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_small_samples_are_exact(seed: int) -> None:
    differences = np.random.default_rng(seed).normal(0.3, 1.0, 12)
    assert wilcoxon_p(differences) == pytest.approx(exact_wilcoxon_p(differences), rel=1e-9)


def test_wilcoxon_with_ties_and_zeros_uses_the_corrected_normal_approximation() -> None:
    differences = np.round(np.random.default_rng(4).normal(0.1, 0.5, 300), 1)  # many ties and zeros
    assert (differences == 0).any()
    assert wilcoxon_p(differences) == pytest.approx(normal_wilcoxon_p(differences), rel=1e-9)


def test_wilcoxon_without_nonzero_differences_is_none() -> None:
    assert wilcoxon_p(np.zeros(5)) is None
    assert wilcoxon_p(np.array([])) is None


@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_agreement_matches_the_definitions_with_ties(decimals: int) -> None:
    rng = np.random.default_rng(decimals)
    human = np.round(rng.uniform(1, 5, 200), decimals)  # decimals=0: integer ratings, ties everywhere
    model = np.round(np.clip(human + rng.normal(0, 0.8, 200), 1, 5), decimals)
    figures = agreement(model, human)
    assert figures.n == 200
    assert figures.lcc == pytest.approx(pearson(model, human), rel=1e-9)
    assert figures.srcc == pytest.approx(pearson(average_ranks(model), average_ranks(human)), rel=1e-9)
    assert figures.ktau == pytest.approx(tau_b(model, human), rel=1e-9)
    assert figures.mse == pytest.approx(np.mean((model - human) ** 2), rel=1e-12)


def test_agreement_of_degenerate_vectors_is_none_not_nan() -> None:
    assert agreement([], []).lcc is None and agreement([], []).mse is None
    two = agreement([1.0, 2.0], [1.0, 3.0])
    assert (two.n, two.lcc, two.srcc, two.ktau, two.mse) == (2, None, None, None, 0.5)
    constant = agreement([3.0, 3.0, 3.0], [1.0, 2.0, 4.0])
    assert constant.lcc is None and constant.mse == pytest.approx((4 + 1 + 1) / 3)
