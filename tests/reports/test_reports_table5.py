"""The paper's Table 5 over a judge group, on SQLite and PostgreSQL: EmpathyEval's means beside the
LLM judges' AB_Score, MOS and flip rate, each with a bootstrap CI, read from runs linked by group."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from evalsvc.errors import InvalidParameter, NotFound
from evalsvc.reports.table5 import table5
from evalsvc.reports.tables import render_text, table5_tables
from evalsvc.store import (
    ItemOutcome,
    Run,
    RunItem,
    RunItemSpec,
    Store,
    add_run_items,
    record_outcomes,
    refresh_run_counts,
)
from evalsvc.store.judging import VerdictRecord, ensure_judge_version, store_verdicts
from tests.reports.builders import judge_provenance
from tests.store.factories import SeededItem, seed_run

SYSTEMS = ("bot-a", "bot-b")
# Per system, four items: A/B verdicts (forward, backward) and MOS scores.
AB = {"bot-a": [(1, 1), (1, 1), (1, -1), (0, 0)], "bot-b": [(-1, -1), (-1, 1), (-1, -1), (0, 0)]}
MOS = {"bot-a": [5, 4, 4, 3], "bot-b": [2, 2, 1, 3]}


def specs() -> list[RunItemSpec]:
    return [
        RunItemSpec(f"{system}-{index}", f"q{index}.wav", f"{system}{index}.wav", system=system, dataset="d")
        for system in SYSTEMS
        for index in range(4)
    ]


def sha(text: str) -> str:
    return f"{text:0>64}"[-64:]


def verdict_run(store: Store, judge: str, group_id: int) -> int:
    provenance = judge_provenance(judge, sha(judge.replace("+", "p").replace("-", "")))
    with store.session() as session:
        run = Run(name="t5", mode="scores", judge=judge, group_id=group_id)
        session.add(run)
        session.flush()
        add_run_items(session, run.id, specs())
        version = ensure_judge_version(session, provenance)
        records = []
        for spec in specs():
            system, index = spec.system or "", int(spec.item_key[-1])
            if judge.startswith("llm-ab"):
                forward, backward = AB[system][index]
                value = forward if forward == backward else 0
                extra = {"forward": forward, "backward": backward, "flipped": forward != backward}
            else:
                value, extra = MOS[system][index], {}
            key = sha(f"{judge}{spec.item_key}".replace("-", "").replace("+", ""))
            records.append(
                (spec.item_key, VerdictRecord(key, judge, sha("q"), sha("r"), None, value, **extra))
            )
        ids = store_verdicts(session, version, [record for _, record in records])
        items = dict(
            session.execute(select(RunItem.item_key, RunItem.id).where(RunItem.run_id == run.id)).all()
        )
        record_outcomes(session, [ItemOutcome(items[k], verdict_id=ids[r.content_key]) for k, r in records])
        refresh_run_counts(session, run.id)
        return run.id


@pytest.fixture(scope="module")
def group(module_store: Store) -> dict[str, int]:
    items = [
        SeededItem(spec, sha(f"q{i}"), sha(f"r{i}"), scores=(3.0 + (spec.system == "bot-a"), 3.0, 4.0, 2.0))
        for i, spec in enumerate(specs())
    ]
    first = seed_run(module_store, items, mode="scores", name="t5")
    with module_store.session() as session:
        session.get_one(Run, first).group_id = first
    runs = {"empathyeval": first}
    for judge in ("llm-ab", "llm-mos", "llm-mos+emotion"):
        runs[judge] = verdict_run(module_store, judge, first)
    return runs


def test_table5_puts_every_judge_of_the_group_side_by_side(
    module_store: Store, group: dict[str, int]
) -> None:
    with module_store.session() as session:
        report = table5(session, [group["llm-mos"]], None)
    assert report.runs == group
    a, b = report.rows
    assert (a.system, b.system) == SYSTEMS
    assert a.empathyeval["NS"].mean == 4.0 and b.empathyeval["NS"].mean == 3.0
    assert a.empathyeval["avg"].ci_low == a.empathyeval["avg"].ci_high == 3.25  # constant: a zero-width CI
    assert a.llm["LLM"]["AB_Score"].mean == pytest.approx(0.5)  # 1, 1, 0 (flipped), 0
    assert a.llm["LLM"]["flip_rate"].mean == pytest.approx(0.25)
    assert b.llm["LLM"]["AB_Score"].mean == pytest.approx(-0.5)
    ci = a.llm["LLM"]["AB_Score"]
    assert ci.ci_low is not None and ci.ci_high is not None and ci.ci_low <= 0.5 <= ci.ci_high
    assert a.llm["LLM"]["MOS"].mean == 4.0 and b.llm["LLM+emotion"]["MOS"].mean == 2.0
    assert a.llm["LLM+emotion"]["AB_Score"].n == 0 and a.llm["LLM+emotion"]["AB_Score"].mean is None
    text = render_text(table5_tables(report))
    assert "EmpathyEval avg" in text and "LLM+emotion AB_Score" in text and "0.500 [" in text


def test_two_runs_of_one_judge_and_unknown_runs_are_refused(
    module_store: Store, group: dict[str, int]
) -> None:
    other = verdict_run(module_store, "llm-ab", group_id=10_000)  # a group of its own
    with module_store.session() as session:
        with pytest.raises(InvalidParameter, match="both judged by llm-ab"):
            table5(session, [group["empathyeval"], other], None)
        with pytest.raises(NotFound):
            table5(session, [999_999], None)
        with pytest.raises(InvalidParameter, match="give a run"):
            table5(session, [], None)
