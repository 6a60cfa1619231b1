"""Summaries and exports of llm-mos and llm-ab runs on both databases: the verdicts' means, CIs and
flip rates, overall and in every breakdown, against numpy over the items that were written."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Select, update

from evalsvc.reports import export_batches, run_summary
from evalsvc.reports import summary as summary_module
from evalsvc.reports.export import export_columns, write_export
from evalsvc.reports.schemas import Figure, GroupSummary
from evalsvc.reports.tables import render_text, summary_tables
from evalsvc.store import Store
from evalsvc.store.models import RunItem
from evalsvc.store.report_queries import EXPORT_COLUMNS
from tests.reports.builders import (
    VerdictItem,
    add_run,
    add_verdict_run,
    random_items,
    random_verdict_items,
    sha,
)


@dataclass(frozen=True)
class Runs:
    mos: int
    ab: int
    empathyeval: int
    mos_items: list[VerdictItem]
    ab_items: list[VerdictItem]


@pytest.fixture(scope="module")
def runs(module_store: Store) -> Runs:
    mos_items = random_verdict_items(np.random.default_rng(21), 240, ab=False)
    ab_items = random_verdict_items(np.random.default_rng(22), 240, ab=True)
    return Runs(
        mos=add_verdict_run(module_store, mos_items, "llm-mos+emotion", name="mos"),
        ab=add_verdict_run(module_store, ab_items, "llm-ab", name="ab"),
        empathyeval=add_run(module_store, random_items(np.random.default_rng(23), 60)),
        mos_items=mos_items,
        ab_items=ab_items,
    )


def reference_interval(values: np.ndarray) -> tuple[float, float]:
    """A percentile bootstrap written from its definition, with its own generator and more resamples."""
    rng = np.random.default_rng(12345)
    means = np.array([rng.choice(values, size=values.size).mean() for _ in range(20_000)])
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def assert_figure(figure: Figure, values: np.ndarray) -> None:
    assert figure.n == values.size
    assert figure.mean == pytest.approx(values.mean(), abs=1e-12)
    assert figure.ci_low is not None and figure.ci_high is not None
    assert figure.ci_low <= figure.mean <= figure.ci_high
    low, high = reference_interval(values)
    # 2,000 resamples against 20,000: the percentiles agree to Monte Carlo error, far below the width.
    width = high - low
    assert figure.ci_low == pytest.approx(low, abs=0.06 * width)
    assert figure.ci_high == pytest.approx(high, abs=0.06 * width)


def judged(items: Sequence[VerdictItem]) -> list[VerdictItem]:
    return [item for item in items if item.value is not None]


def assert_counts(group: GroupSummary, items: Sequence[VerdictItem]) -> None:
    assert group.items == len(items)
    assert group.scored == len(judged(items))
    assert group.failed == sum(item.error is not None for item in items)
    assert group.pending == sum(item.orders is None and item.error is None for item in items)
    assert all(stats.n == 0 for stats in group.scores.values())  # a verdict is not a score


def breakdowns(items: Sequence[VerdictItem]) -> dict[str, dict[str | None, list[VerdictItem]]]:
    groups: dict[str, dict[str | None, list[VerdictItem]]] = {"system": {}, "dataset": {}, "emotion": {}}
    for item in items:
        for name, by in groups.items():
            by.setdefault(getattr(item, name), []).append(item)
    return groups


def check_groups(
    summary_groups: Sequence[GroupSummary],
    expected: dict[str | None, list[VerdictItem]],
    check: Callable[[GroupSummary, list[VerdictItem]], None],
) -> None:
    assert [group.key for group in summary_groups] == sorted(expected, key=lambda k: (k is None, k or ""))
    for group in summary_groups:
        assert_counts(group, expected[group.key])
        check(group, judged(expected[group.key]))


def test_mos_summary_reports_the_mean_score_with_its_bootstrap_ci(module_store: Store, runs: Runs) -> None:
    with module_store.session() as session:
        summary = run_summary(session, runs.mos, None)
    assert summary.judge == "llm-mos+emotion"
    assert_counts(summary.overall, runs.mos_items)
    assert summary.errors == {"llm_timeout": sum(item.error is not None for item in runs.mos_items)}

    def check(group: GroupSummary, items: list[VerdictItem]) -> None:
        assert set(group.verdicts) == {"MOS"}
        values = np.array([item.value for item in items])
        assert group.verdicts["MOS"].mean == pytest.approx(values.mean(), abs=1e-12)
        assert group.verdicts["MOS"].n == values.size

    assert_figure(summary.overall.verdicts["MOS"], np.array([item.value for item in judged(runs.mos_items)]))
    expected = breakdowns(runs.mos_items)
    check_groups(summary.by_system, expected["system"], check)
    check_groups(summary.by_dataset, expected["dataset"], check)
    check_groups(summary.by_emotion, expected["emotion"], check)
    text = render_text(summary_tables(summary))
    assert f"{summary.overall.scored} judged" in text and "MOS" in text


def test_ab_summary_reports_ab_score_and_flip_rate(module_store: Store, runs: Runs) -> None:
    with module_store.session() as session:
        summary = run_summary(session, runs.ab, None)
    assert_counts(summary.overall, runs.ab_items)
    items = judged(runs.ab_items)
    assert_figure(summary.overall.verdicts["AB_Score"], np.array([item.value for item in items]))
    assert_figure(summary.overall.verdicts["flip_rate"], np.array([float(item.flipped) for item in items]))

    def check(group: GroupSummary, items: list[VerdictItem]) -> None:
        assert set(group.verdicts) == {"AB_Score", "flip_rate"}
        values = np.array([item.value for item in items])
        flips = np.array([item.flipped for item in items], dtype=float)
        assert group.verdicts["AB_Score"].mean == pytest.approx(values.mean(), abs=1e-12)
        assert group.verdicts["flip_rate"].mean == pytest.approx(flips.mean(), abs=1e-12)

    expected = breakdowns(runs.ab_items)
    check_groups(summary.by_system, expected["system"], check)
    check_groups(summary.by_emotion, expected["emotion"], check)
    text = render_text(summary_tables(summary))
    assert "AB_Score" in text and "flip_rate" in text


def test_empathyeval_summary_has_no_verdict_figures(module_store: Store, runs: Runs) -> None:
    with module_store.session() as session:
        summary = run_summary(session, runs.empathyeval, None)
    assert summary.judge == "empathyeval"
    assert summary.overall.verdicts == {} and all(not group.verdicts for group in summary.by_system)
    assert "judged" not in render_text(summary_tables(summary))


def test_export_of_a_verdict_run_has_verdict_and_flipped_columns(module_store: Store, runs: Runs) -> None:
    expected = {item.key: item for item in runs.ab_items}
    with module_store.session() as session:
        columns = export_columns(session, [runs.ab])
        assert columns == (*EXPORT_COLUMNS, "verdict", "flipped")
        assert export_columns(session, [runs.empathyeval]) == EXPORT_COLUMNS
        sink = io.BytesIO()
        write_export(export_batches(session, [runs.ab], None, batch_rows=50), "csv", sink, columns)
        parquet = io.BytesIO()
        write_export(
            export_batches(session, [runs.mos], None), "parquet", parquet, export_columns(session, [runs.mos])
        )
    rows = list(csv.DictReader(io.StringIO(sink.getvalue().decode())))
    assert len(rows) == len(runs.ab_items)
    for row in rows:
        item = expected[row["item_key"]]
        assert row["verdict"] == ("" if item.value is None else str(item.value))
        assert row["flipped"] == ("" if item.value is None else str(item.flipped))
        # A verdict item's judge version and clip hashes come from its verdict (it has no result).
        judged = item.value is not None
        assert (row["query_sha256"], row["response_sha256"]) == (
            (sha(f"q{item.key}"), sha(f"r{item.key}")) if judged else ("", "")
        )
        assert bool(row["model_version_id"]) == judged
    table = pq.read_table(io.BytesIO(parquet.getvalue())).to_pydict()
    by_key = {item.key: item for item in runs.mos_items}
    assert table["verdict"] == [by_key[key].value for key in table["item_key"]]
    assert set(table["flipped"]) == {None}  # MOS has no presentation orders


def test_a_label_recorded_between_the_summary_statements_gets_a_group(
    module_store: Store, runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run still being judged: an +emotion judge records an item's emotion after the counts were
    read and before the verdicts are; the summary shows the new group instead of failing."""
    judged = next(item for item in runs.mos_items if item.orders is not None and item.value is not None)
    real_verdict_rows = summary_module.verdict_rows

    def label_recorded_in_between(run_id: int) -> Select:
        with module_store.session() as other:
            other.execute(
                update(RunItem)
                .where(RunItem.run_id == run_id, RunItem.item_key == judged.key)
                .values(emotion="surprise-recorded-late")
            )
        return real_verdict_rows(run_id)

    monkeypatch.setattr(summary_module, "verdict_rows", label_recorded_in_between)
    try:
        with module_store.session() as session:
            summary = run_summary(session, runs.mos, None)
    finally:
        with module_store.session() as other:
            other.execute(
                update(RunItem)
                .where(RunItem.run_id == runs.mos, RunItem.item_key == judged.key)
                .values(emotion=judged.emotion)
            )
    late = [group for group in summary.by_emotion if group.key == "surprise-recorded-late"]
    assert len(late) == 1 and late[0].verdicts["MOS"].n == 1
