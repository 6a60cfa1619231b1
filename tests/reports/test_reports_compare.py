"""Paired comparisons on both databases, against numpy/scipy over the pairs built from the items."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy import stats as scipy_stats

from evalsvc.errors import InvalidParameter, NotFound
from evalsvc.reports import Side, compare
from evalsvc.reports.compare import sides
from evalsvc.reports.schemas import Comparison
from evalsvc.store import Store, create_tenant
from tests.reports.builders import Item, add_run, random_items, random_scores, sha

NAMES = ("NS", "WA", "EU", "ES", "avg")


@dataclass(frozen=True)
class Seeded:
    tenant: int
    stranger: int
    before: int
    after: int
    systems: int
    empty: int
    single: int
    items: dict[int, list[Item]]


def vector(item: Item) -> list[float]:
    assert item.scores is not None and item.avg is not None
    return [*item.scores, item.avg]


@pytest.fixture(scope="module")
def seeded(module_store: Store) -> Seeded:
    with module_store.session() as session:
        tenant, stranger = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
    rng = np.random.default_rng(21)
    before = random_items(rng, 500, prefix="item")
    # The same items judged again: mostly close to before (so ties occur), some failed, some extra.
    after = []
    for item in before[:480]:
        if item.scores is None or rng.random() < 0.5:
            after.append(replace(item, scores=random_scores(rng)))
        else:
            nudged = np.clip(np.round(np.array(item.scores) + rng.normal(0.15, 0.1, 4), 2), 1, 5)
            after.append(replace(item, scores=tuple(float(value) for value in nudged)))  # type: ignore[arg-type]
    after += random_items(rng, 30, prefix="extra")
    # Two systems answering shared queries; sys-x answers some queries twice, each has queries of its own.
    answers = []
    for query in range(120):
        for system, copies in (("sys-x", 2 if query % 10 == 0 else 1), ("sys-y", 1)):
            if (system == "sys-x" and query >= 110) or (system == "sys-y" and query < 5):
                continue
            for copy in range(copies):
                answers.append(
                    Item(
                        f"{system}-{query}-{copy}",
                        system,
                        "esd",
                        "sad",
                        sha(f"query-{query}"),
                        sha(f"{system}-{query}-{copy}"),
                        scores=random_scores(rng),
                    )
                )
    single = [Item("one", "sys-a", "esd", None, sha("q1"), sha("r1"), scores=(4.0, 4.0, 3.0, 2.0))]
    single_again = [replace(single[0], response=sha("r2"), scores=(3.0, 4.05, 3.5, 2.0))]
    runs = {
        "before": add_run(module_store, before, name="before", tenant_id=tenant),
        "after": add_run(module_store, after, name="after", tenant_id=tenant, judge="judge-2"),
        "systems": add_run(module_store, answers, name="systems", tenant_id=tenant),
        "empty": add_run(module_store, [], name="empty", tenant_id=tenant),
        "single": add_run(module_store, single, name="single", tenant_id=tenant),
    }
    single_b = add_run(module_store, single_again, name="single-b", tenant_id=tenant)
    items = {runs["before"]: before, runs["after"]: after, runs["systems"]: answers, runs["single"]: single}
    items[single_b] = single_again
    return Seeded(
        tenant, stranger, runs["before"], runs["after"], runs["systems"], runs["empty"], runs["single"], items
    )


def by_key(items: Sequence[Item]) -> dict[str, list[float]]:
    return {item.key: vector(item) for item in items if item.scores is not None}


def by_query(items: Sequence[Item], system: str) -> dict[str, list[float]]:
    answers: dict[str, list[list[float]]] = defaultdict(list)
    for item in items:
        if item.system == system and item.scores is not None:
            answers[item.query].append(vector(item))
    return {query: np.mean(rows, axis=0).tolist() for query, rows in answers.items()}


def assert_comparison(comparison: Comparison, a: dict[str, list[float]], b: dict[str, list[float]]) -> None:
    keys = sorted(set(a) & set(b))
    assert (comparison.pairs, comparison.unmatched_a, comparison.unmatched_b) == (
        len(keys),
        len(a) - len(keys),
        len(b) - len(keys),
    )
    left = np.array([a[key] for key in keys])
    right = np.array([b[key] for key in keys])
    for index, name in enumerate(NAMES):
        figures = comparison.dimensions[name]
        d = left[:, index] - right[:, index]
        margin = comparison.tie_margin
        assert figures.mean_a == pytest.approx(left[:, index].mean(), abs=1e-12)
        assert figures.mean_b == pytest.approx(right[:, index].mean(), abs=1e-12)
        assert figures.mean_difference == pytest.approx(d.mean(), abs=1e-12)
        assert figures.win == pytest.approx(np.mean(d > margin))
        assert figures.loss == pytest.approx(np.mean(d < -margin))
        assert figures.tie == pytest.approx(np.mean(np.abs(d) <= margin))
        assert figures.ab_score == pytest.approx(np.mean(d > margin) - np.mean(d < -margin))
        nonzero = d[d != 0]
        method = (
            "exact" if nonzero.size <= 50 and np.unique(np.abs(nonzero)).size == nonzero.size else "approx"
        )
        expected_p = scipy_stats.wilcoxon(d, zero_method="wilcox", method=method).pvalue
        assert figures.wilcoxon_p == pytest.approx(expected_p, rel=1e-9)
        reference = scipy_stats.bootstrap(
            (d,), np.mean, n_resamples=comparison.resamples, method="percentile", random_state=7
        ).confidence_interval
        spread = d.std() / np.sqrt(d.size)  # Monte Carlo noise of two estimates of the same quantile
        assert figures.ci_low == pytest.approx(reference.low, abs=0.15 * spread)
        assert figures.ci_high == pytest.approx(reference.high, abs=0.15 * spread)
        assert figures.ci_low <= figures.mean_difference <= figures.ci_high
        assert figures.ab_ci_low <= figures.ab_score <= figures.ab_ci_high


def test_two_runs_of_the_same_items_are_paired_by_item_key(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        comparison = compare(session, seeded.tenant, Side(seeded.after), Side(seeded.before))
    assert comparison.pair_by == "item"
    assert_comparison(comparison, by_key(seeded.items[seeded.after]), by_key(seeded.items[seeded.before]))
    assert comparison.dimensions["avg"].mean_difference > 0  # most items were nudged upwards


def test_two_systems_of_one_run_are_paired_by_query_audio(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        comparison = compare(
            session, seeded.tenant, Side(seeded.systems, "sys-x"), Side(seeded.systems, "sys-y")
        )
    assert comparison.pair_by == "query"
    items = seeded.items[seeded.systems]
    assert_comparison(comparison, by_query(items, "sys-x"), by_query(items, "sys-y"))
    assert (comparison.pairs, comparison.unmatched_a, comparison.unmatched_b) == (105, 5, 10)


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_the_tie_margin_and_a_dataset_filter_apply(
    module_store: Store, seeded: Seeded, margin: float
) -> None:
    with module_store.session() as session:
        comparison = compare(
            session,
            seeded.tenant,
            Side(seeded.after),
            Side(seeded.before),
            tie_margin=margin,
            dataset="esd",
            resamples=4000,
        )
    after, before = (
        [item for item in seeded.items[run] if item.dataset == "esd"] for run in (seeded.after, seeded.before)
    )
    assert_comparison(comparison, by_key(after), by_key(before))


def test_a_seed_fixes_the_bootstrap(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        first, again, other = (
            compare(session, None, Side(seeded.after), Side(seeded.before), resamples=2000, seed=seed)
            for seed in (3, 3, 4)
        )
    assert first == again
    assert first.dimensions["NS"].ci_low != other.dimensions["NS"].ci_low


def test_an_empty_side_and_a_single_pair_give_clear_answers(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        empty = compare(session, seeded.tenant, Side(seeded.empty), Side(seeded.before))
        single_b = max(seeded.items)
        single = compare(session, seeded.tenant, Side(seeded.single), Side(single_b))
    assert (empty.pairs, empty.unmatched_a, empty.unmatched_b) == (
        0,
        0,
        len(by_key(seeded.items[seeded.before])),
    )
    assert all(value is None for value in empty.dimensions["avg"].model_dump().values())
    figures = single.dimensions["NS"]
    assert (single.pairs, figures.mean_difference, figures.win, figures.ab_score) == (1, 1.0, 1.0, 1.0)
    assert (figures.ci_low, figures.ci_high, figures.ab_ci_low, figures.wilcoxon_p) == (None, None, None, 1.0)
    assert single.dimensions["WA"].tie == 1.0  # 4.0 vs 4.05: within the default 0.1 margin
    assert single.dimensions["ES"].wilcoxon_p is None  # no difference at all: nothing to test


def test_comparisons_are_tenant_scoped_and_checked(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        with pytest.raises(NotFound):
            compare(session, seeded.stranger, Side(seeded.after), Side(seeded.before))
        for bad in (
            {"tie_margin": -0.1},
            {"resamples": 0},
            {"seed": -1},
        ):
            with pytest.raises(InvalidParameter):
                compare(session, None, Side(seeded.after), Side(seeded.before), **bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidParameter):
            compare(session, None, Side(seeded.after), Side(seeded.after))


def test_sides_from_flags() -> None:
    assert sides([1], ["x", "y"]) == (Side(1, "x"), Side(1, "y"))
    assert sides([1, 2], []) == (Side(1), Side(2))
    assert sides([1, 2], ["x"]) == (Side(1, "x"), Side(2, "x"))
    assert sides([1, 2], ["x", "y"]) == (Side(1, "x"), Side(2, "y"))
    for runs, systems in (([1], []), ([1], ["x"]), ([1, 2, 3], []), ([1, 2], ["x", "y", "z"])):
        with pytest.raises(InvalidParameter):
            sides(runs, systems)
