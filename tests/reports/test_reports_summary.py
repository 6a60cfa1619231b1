"""Run summaries and leaderboards on both databases, against numpy over the items that were written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats as scipy_stats

from evalsvc.errors import InvalidParameter, NotFound
from evalsvc.reports import leaderboards, run_summary
from evalsvc.reports.schemas import GroupSummary, ScoreStats
from evalsvc.stats import BIN_EDGES
from evalsvc.store import Store, create_tenant
from tests.reports.builders import Item, add_run, random_items, sha

NAMES = ("NS", "WA", "EU", "ES", "avg")


@dataclass(frozen=True)
class Seeded:
    tenant_a: int
    tenant_b: int
    first: int
    second: int
    other_tenant: int
    empty: int
    single: int
    items: dict[int, list[Item]]


@pytest.fixture(scope="module")
def seeded(module_store: Store) -> Seeded:
    with module_store.session() as session:
        tenant_a, tenant_b = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
    first_items = random_items(np.random.default_rng(11), 600, prefix="first", unscored=0.04)
    second_items = random_items(np.random.default_rng(12), 300, prefix="second")
    other_items = random_items(np.random.default_rng(13), 100, prefix="other")
    single_items = [Item("only", "sys-a", "esd", "sad", sha("q"), sha("r"), scores=(4.0, 3.5, 2.0, 1.25))]
    first = add_run(module_store, first_items, name="first", tenant_id=tenant_a)
    second = add_run(module_store, second_items, name="second", tenant_id=tenant_a, judge="judge-2")
    other = add_run(module_store, other_items, name="other", tenant_id=tenant_b)
    empty = add_run(module_store, [], name="empty", tenant_id=tenant_a)
    single = add_run(module_store, single_items, name="single", tenant_id=tenant_a)
    items = {first: first_items, second: second_items, other: other_items, empty: [], single: single_items}
    return Seeded(tenant_a, tenant_b, first, second, other, empty, single, items)


def scores_of(items: Sequence[Item], name: str) -> np.ndarray:
    index = NAMES.index(name)
    return np.array([(*item.scores, item.avg)[index] for item in items if item.scores is not None])


def assert_stats(stats: ScoreStats, values: np.ndarray, *, histogram: bool = True) -> None:
    assert stats.n == values.size
    assert stats.mean == pytest.approx(values.mean(), abs=1e-12)
    assert stats.std == pytest.approx(values.std(ddof=1), rel=1e-9)
    low, high = scipy_stats.t.interval(
        0.95, values.size - 1, loc=values.mean(), scale=scipy_stats.sem(values)
    )
    assert stats.ci_low == pytest.approx(low, rel=1e-9)
    assert stats.ci_high == pytest.approx(high, rel=1e-9)
    if histogram:
        expected, _ = np.histogram(values, bins=[1.0, *BIN_EDGES, 5.0])
        assert stats.histogram == expected.tolist()


def assert_group(group: GroupSummary, items: Sequence[Item]) -> None:
    assert group.items == len(items)
    assert group.scored == sum(item.scores is not None for item in items)
    assert group.failed == sum(item.status == "failed" for item in items)
    assert group.pending == sum(item.status == "pending" for item in items)
    for name in NAMES:
        assert_stats(group.scores[name], scores_of(items, name))


def test_summary_matches_numpy_overall_and_in_every_breakdown(module_store: Store, seeded: Seeded) -> None:
    items = seeded.items[seeded.first]
    with module_store.session() as session:
        summary = run_summary(session, seeded.first, seeded.tenant_a)
    assert (summary.run_id, summary.run_name, summary.mode) == (seeded.first, "first", "scores")
    assert_group(summary.overall, items)
    for groups, attribute in (
        (summary.by_system, "system"),
        (summary.by_dataset, "dataset"),
        (summary.by_emotion, "emotion"),
    ):
        keys = sorted({getattr(item, attribute) for item in items}, key=lambda key: (key is None, key or ""))
        assert [group.key for group in groups] == keys
        for group in groups:
            assert_group(group, [item for item in items if getattr(item, attribute) == group.key])
    errors = [item.error_code for item in items if item.error_code is not None]
    assert "score_line_missing" in errors  # done items without scores are counted as errors, too
    assert summary.errors == {
        code: errors.count(code) for code in sorted(set(errors), key=errors.count, reverse=True)
    }


def test_an_empty_run_has_a_summary_of_nothing(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        summary = run_summary(session, seeded.empty, seeded.tenant_a)
    assert (summary.overall.items, summary.overall.scored, summary.errors) == (0, 0, {})
    assert all(
        stats.n == 0 and stats.mean is None and stats.ci_low is None
        for stats in summary.overall.scores.values()
    )
    assert summary.by_system == summary.by_dataset == summary.by_emotion == []


def test_a_one_item_run_has_a_mean_but_no_interval(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        summary = run_summary(session, seeded.single, None)
    avg = summary.overall.scores["avg"]
    assert (avg.n, avg.mean, avg.std, avg.ci_low, avg.ci_high) == (1, 2.6875, None, None, None)
    assert summary.overall.scores["NS"].histogram == [0, 0, 0, 1, 0]  # 4.0 is in 3.5-4.5


def test_leaderboard_ranks_systems_per_dataset_across_runs(module_store: Store, seeded: Seeded) -> None:
    items = seeded.items[seeded.first] + seeded.items[seeded.second]
    with module_store.session() as session:
        boards = leaderboards(session, seeded.tenant_a, run_ids=[seeded.first, seeded.second])
    datasets = sorted({item.dataset for item in items if item.scores is not None})
    assert [board.dataset for board in boards.leaderboards] == datasets
    for board in boards.leaderboards:
        assert len(board.model_versions) == 2  # two judges: the board says so
        expected = {}
        for system in {item.system for item in items}:
            mine = [item for item in items if item.system == system and item.dataset == board.dataset]
            expected[system] = scores_of(mine, "avg").mean()
        assert [row.system for row in board.rows] == sorted(expected, key=lambda system: -expected[system])
        assert [row.rank for row in board.rows] == list(range(1, len(board.rows) + 1))
        for row in board.rows:
            mine = [item for item in items if item.system == row.system and item.dataset == board.dataset]
            assert row.n == len(scores_of(mine, "avg"))
            for name in NAMES:
                assert_stats(row.scores[name], scores_of(mine, name), histogram=False)


@pytest.mark.parametrize("sort", ["NS", "ES", "system", "n"])
def test_leaderboard_sorts_by_any_column(module_store: Store, seeded: Seeded, sort: str) -> None:
    with module_store.session() as session:
        [board] = leaderboards(
            session, seeded.tenant_a, run_ids=[seeded.first], dataset="esd", sort=sort
        ).leaderboards
    if sort == "system":
        keys: list[object] = [row.system for row in board.rows]
    elif sort == "n":
        keys = [-row.n for row in board.rows]
    else:
        keys = [-(row.scores[sort].mean or 0) for row in board.rows]
    assert keys == sorted(keys)
    assert board.dataset == "esd"


def test_leaderboard_of_every_visible_run_leaves_other_tenants_out(
    module_store: Store, seeded: Seeded
) -> None:
    mine = [item for run in (seeded.first, seeded.second, seeded.single) for item in seeded.items[run]]
    with module_store.session() as session:
        boards = leaderboards(session, seeded.tenant_a)
        everything = leaderboards(session, None)
    scored = sum(row.n for board in boards.leaderboards for row in board.rows)
    assert scored == sum(item.scores is not None for item in mine)  # judged without scores: not ranked
    total = sum(row.n for board in everything.leaderboards for row in board.rows)
    assert total == scored + sum(item.scores is not None for item in seeded.items[seeded.other_tenant])


def test_reports_of_another_tenants_run_are_not_found(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        with pytest.raises(NotFound):
            run_summary(session, seeded.other_tenant, seeded.tenant_a)
        with pytest.raises(NotFound):
            leaderboards(session, seeded.tenant_a, run_ids=[seeded.first, seeded.other_tenant])
        for missing in (10_000, 0, 2**40):
            with pytest.raises(NotFound):
                run_summary(session, missing, None)
        assert run_summary(session, seeded.other_tenant, seeded.tenant_b).overall.items == 100


def test_leaderboard_of_nothing_is_empty_and_a_bad_sort_is_a_user_error(
    module_store: Store, seeded: Seeded
) -> None:
    with module_store.session() as session:
        assert leaderboards(session, seeded.tenant_a, run_ids=[seeded.empty]).leaderboards == []
        assert leaderboards(session, seeded.tenant_a, dataset="no-such-dataset").leaderboards == []
        with pytest.raises(InvalidParameter):
            leaderboards(session, seeded.tenant_a, sort="median")


def test_single_scores_are_reported_exactly(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        [board] = leaderboards(session, None, run_ids=[seeded.single]).leaderboards
    [row] = board.rows
    assert [row.scores[name].mean for name in NAMES] == [4.0, 3.5, 2.0, 1.25, 2.6875]
