"""Human labels (import, validation, tenancy) and agreement with them, on both databases.

The expected Table 4 figures are computed from the written ratings and scores with the reference
implementations (average ranks by hand, tau-b over all pairs), integer ratings giving many ties.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from evalsvc.errors import InvalidParameter, LabelsInvalid, NotFound
from evalsvc.reports import agreement_report, import_labels, labelled_scores
from evalsvc.reports.agreement import LabelledScores
from evalsvc.reports.schemas import AgreementFigures, AgreementReport
from evalsvc.reports.tables import agreement_tables, render_text
from evalsvc.store import HumanLabel, Store, create_tenant
from tests.reports.builders import Item, add_run, random_scores, sha
from tests.reports.reference import average_ranks, pearson, tau_b

DIMENSIONS = ("NS", "WA", "EU", "ES")
SYSTEMS = ("s1", "s2", "s3", "s4", "s5")


@dataclass(frozen=True)
class Seeded:
    tenant: int
    stranger: int
    run: int
    renamed_run: int
    items: list[Item]
    ratings: list[dict[str, object]]


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = ["id", "rater", "NS", "WA", "EU", "ES"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({name: row.get(name, "") for name in columns} for row in rows)
    return path


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def seeded(module_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    rng = np.random.default_rng(31)
    with module_store.session() as session:
        tenant, stranger = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
    items = []
    for index in range(150):
        system = SYSTEMS[index % len(SYSTEMS)]
        quality = 1.5 + SYSTEMS.index(system) * 0.6  # systems differ, so system level is meaningful
        scores = tuple(float(np.clip(np.round(quality + rng.normal(0, 0.7), 2), 1, 5)) for _ in range(4))
        items.append(
            Item(
                f"utt-{index:03d}",
                system,
                "esd",
                None,
                sha(f"q{index}"),
                sha(f"r{index}"),
                scores=scores if index % 17 else None,
                error=None if index % 17 else "audio_unreadable",
            )
        )
    ratings: list[dict[str, object]] = []
    for item in items[:140]:  # the last 10 items carry no ratings
        truth = np.mean(item.scores) if item.scores is not None else 3.0
        for rater in ("ann", "bob", "cy")[: 1 + int(rng.integers(3))]:
            row: dict[str, object] = {"id": item.key, "rater": rater}
            for name in DIMENSIONS:
                if rng.random() > 0.05:  # a rater now and then skips a dimension
                    row[name] = int(np.clip(np.round(truth + rng.normal(0, 0.8)), 1, 5))
            if len(row) == 2:
                row["NS"] = 3
            ratings.append(row)
    ratings.append({"id": "not-in-the-run", "rater": "ann", "NS": 5, "WA": 5, "EU": 5, "ES": 5})
    run = add_run(module_store, items, name="rated", tenant_id=tenant)
    renamed = [replace(item, key=f"renamed-{item.key}") for item in items]
    renamed_run = add_run(module_store, renamed, name="renamed", tenant_id=tenant, judge="judge-2")
    path = write_csv(tmp_path_factory.mktemp("labels") / "ratings.csv", ratings)
    with module_store.session() as session:
        import_labels(session, path, "mos", tenant_id=tenant)
        # The same ratings attached to the audio of the run (its ids must all be items of it).
        audio_path = write_csv(path.with_name("audio.csv"), ratings[:-1])
        import_labels(session, audio_path, "mos-audio", tenant_id=tenant, run_id=run)
    return Seeded(tenant, stranger, run, renamed_run, items, ratings)


def human_means(ratings: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Mean rating per item and dimension over the raters who gave it."""
    given: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in ratings:
        for name in DIMENSIONS:
            if name in row:
                given[str(row["id"])][name].append(float(row[name]))  # type: ignore[arg-type]
    return {
        key: {name: float(np.mean(values)) for name, values in dims.items()} for key, dims in given.items()
    }


def expected_figures(model: np.ndarray, human: np.ndarray) -> dict[str, float | None]:
    both = ~(np.isnan(model) | np.isnan(human))
    x, y = model[both], human[both]
    return {
        "n": x.size,
        "lcc": pearson(x, y),
        "srcc": pearson(average_ranks(x), average_ranks(y)),
        "ktau": tau_b(x, y),
        "mse": float(np.mean((x - y) ** 2)),
    }


def assert_figures(figures: AgreementFigures, expected: dict[str, float | None]) -> None:
    assert figures.n == expected["n"]
    for name in ("lcc", "srcc", "ktau", "mse"):
        assert getattr(figures, name) == pytest.approx(expected[name], rel=1e-9), name


def expected_vectors(seeded: Seeded) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    means = human_means(seeded.ratings)
    matched = [item for item in seeded.items if item.scores is not None and item.key in means]
    systems = [str(item.system) for item in matched]
    model = {
        name: np.array([item.scores[index] for item in matched]) for index, name in enumerate(DIMENSIONS)
    }  # type: ignore[index]
    model["avg"] = np.array([item.avg for item in matched])
    human = {name: np.array([means[item.key].get(name, np.nan) for item in matched]) for name in DIMENSIONS}
    human["avg"] = np.mean([human[name] for name in DIMENSIONS], axis=0)
    return systems, model, human


def assert_table4(report: AgreementReport, seeded: Seeded) -> None:
    systems, model, human = expected_vectors(seeded)
    rows = {row.dimension: row for row in report.rows}
    assert list(rows) == [*DIMENSIONS, "avg", "overall"]
    for name in (*DIMENSIONS, "avg"):
        assert_figures(rows[name].utterance, expected_figures(model[name], human[name]))
    pooled = expected_figures(
        np.concatenate([model[n] for n in DIMENSIONS]), np.concatenate([human[n] for n in DIMENSIONS])
    )
    assert_figures(rows["overall"].utterance, pooled)
    # System level: one point per system, the means over its items rated on that dimension.
    system_model: dict[str, list[float]] = defaultdict(list)
    system_human: dict[str, list[float]] = defaultdict(list)
    for name in (*DIMENSIONS, "avg"):
        for system in SYSTEMS:
            mine = (np.array(systems) == system) & ~np.isnan(human[name])
            system_model[name].append(model[name][mine].mean())
            system_human[name].append(human[name][mine].mean())
        expected = expected_figures(np.array(system_model[name]), np.array(system_human[name]))
        assert_figures(rows[name].system, expected)
    pooled = expected_figures(
        np.concatenate([system_model[n] for n in DIMENSIONS]),
        np.concatenate([system_human[n] for n in DIMENSIONS]),
    )
    assert_figures(rows["overall"].system, pooled)
    assert [means.system for means in report.systems] == list(SYSTEMS)
    assert report.systems[0].human["NS"] == pytest.approx(system_human["NS"][0], rel=1e-12)


def test_agreement_by_item_key_matches_the_reference(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        report = agreement_report(labelled_scores(session, seeded.run, "mos", seeded.tenant))
    means = human_means(seeded.ratings)
    assert report.labelled == len(means)  # 140 rated items and one unknown id
    assert report.matched == sum(item.scores is not None and item.key in means for item in seeded.items)
    raters = [
        sum(row["id"] == item.key for row in seeded.ratings)
        for item in seeded.items
        if item.scores is not None and item.key in means
    ]
    assert report.mean_raters == pytest.approx(np.mean(raters))
    assert_table4(report, seeded)
    assert report.rows[-1].utterance.lcc > 0.5  # the ratings were drawn around the scores


def test_agreement_by_audio_follows_the_audio_into_another_run(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        by_audio = agreement_report(
            labelled_scores(session, seeded.renamed_run, "mos-audio", seeded.tenant, "audio")
        )
        by_key = agreement_report(labelled_scores(session, seeded.renamed_run, "mos", seeded.tenant, "item"))
        hashes = (
            session.execute(select(HumanLabel.query_sha256).where(HumanLabel.item_key == "utt-001"))
            .scalars()
            .all()
        )
    assert by_key.matched == 0 and by_key.rows[0].utterance.lcc is None  # no key matches: clear, no error
    assert_table4(by_audio, seeded)  # the renamed run has the same scores for the same audio
    assert sha("q1") in hashes


def test_labels_files_are_checked_line_by_line(module_store: Store, seeded: Seeded, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "a", "NS": 4, "WA": 4, "EU": 4, "ES": 4},
            {"id": "b", "NS": 6},
            "{not json",
            {"NS": 3},
            {"id": "c", "ns": "high", "wa": True},
            {"id": "d", "rater": "x"},
            {"id": "a", "rater": "r", "ES": 2},
            {"id": "a", "rater": "r", "ES": 3},
            [1, 2],
        ],
    )
    with module_store.session() as session, pytest.raises(LabelsInvalid) as raised:
        import_labels(session, path, "bad", tenant_id=None)
    lines = [line for line, _message in raised.value.problems]
    assert lines == [2, 3, 4, 5, 5, 6, 8, 9]
    messages = " | ".join(message for _line, message in raised.value.problems)
    for part in ("NS must lie in 1-5", "not valid JSON", "id must be", "NS must be a number", "WA must be a number",
                 "no score", "rated id 'a' already (line 7)", "not a JSON object"):  # fmt: skip
        assert part in messages
    assert raised.value.to_dict()["code"] == "labels_invalid"
    with module_store.session() as session:
        assert session.scalars(select(HumanLabel.id).where(HumanLabel.item_key == "b")).first() is None


def test_unnamed_raters_are_numbered_and_averaged(
    module_store: Store, seeded: Seeded, tmp_path: Path
) -> None:
    first = seeded.items[1]
    path = write_jsonl(
        tmp_path / "anon.jsonl",
        [
            {"id": first.key, "NS": 1, "WA": 2, "EU": 3, "ES": 4},
            {"id": first.key, "NS": 2, "WA": "", "EU": 4, "ES": "5"},
        ],
    )
    with module_store.session() as session:
        imported = import_labels(session, path, "anon", tenant_id=seeded.tenant)
        raters = session.scalars(
            select(HumanLabel.rater).where(HumanLabel.label_set_id == imported.label_set_id)
        ).all()
        scores = labelled_scores(session, seeded.run, "anon", seeded.tenant)
    assert (imported.ratings, imported.items, imported.raters) == (2, 1, 2)
    assert sorted(raters) == ["#1", "#2"]
    assert [scores.human[name][0] for name in DIMENSIONS] == [1.5, 2.0, 3.5, 4.5]
    report = agreement_report(scores)
    assert report.matched == 1 and report.rows[0].utterance.lcc is None  # one point: no correlation


def test_ids_must_be_items_of_the_run_given(module_store: Store, seeded: Seeded, tmp_path: Path) -> None:
    failed = next(item for item in seeded.items if item.scores is None)
    known = [{"id": seeded.items[1].key, "NS": 3}, {"id": failed.key, "NS": 2}]
    with module_store.session() as session, pytest.raises(LabelsInvalid) as raised:
        import_labels(session, write_csv(tmp_path / "x.csv", [{"id": "nope", "NS": 3}, *known]), "x",
                      tenant_id=seeded.tenant, run_id=seeded.run)  # fmt: skip
    assert raised.value.problems == [(2, f"id 'nope' is not an item of run {seeded.run}")]
    with module_store.session() as session:
        imported = import_labels(session, write_csv(tmp_path / "y.csv", known), "y", tenant_id=seeded.tenant,
                                 run_id=seeded.run)  # fmt: skip
    assert (imported.ratings, imported.with_audio) == (2, 1)  # the failed item has no audio hashes yet


def test_label_sets_are_tenant_scoped_and_named_once(
    module_store: Store, seeded: Seeded, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "ok.csv", [{"id": seeded.items[1].key, "NS": 3}])
    with module_store.session() as session:
        with pytest.raises(NotFound):
            labelled_scores(session, seeded.run, "mos", seeded.stranger)
        with pytest.raises(NotFound):
            labelled_scores(session, seeded.run, "no-such-set", seeded.tenant)
        with pytest.raises(NotFound):
            import_labels(session, path, "theirs", tenant_id=seeded.stranger, run_id=seeded.run)
        with pytest.raises(InvalidParameter):
            import_labels(session, path, "mos", tenant_id=seeded.tenant)
    with module_store.session() as session, pytest.raises(LabelsInvalid):
        import_labels(session, tmp_path / "missing.csv", "y", tenant_id=None)
    with module_store.session() as session, pytest.raises(LabelsInvalid):
        import_labels(session, write_jsonl(tmp_path / "e.txt", []), "y", tenant_id=None)
    with module_store.session() as session, pytest.raises(LabelsInvalid):
        import_labels(session, write_jsonl(tmp_path / "e.jsonl", []), "y", tenant_id=None)


def test_random_scores_round_to_ties() -> None:
    assert len(set(random_scores(np.random.default_rng(0), decimals=0))) < 4


def labelled(systems: list[str], seed: int = 5) -> LabelledScores:
    """Judge and human scores for items of `systems` (one item per entry), systems set apart."""
    rng = np.random.default_rng(seed)
    level = np.array([1.5 + 0.8 * sorted(set(systems)).index(system) for system in systems])
    model = {name: np.clip(level + rng.normal(0, 0.4, level.size), 1, 5) for name in DIMENSIONS}
    human = {name: np.clip(level + rng.normal(0, 0.4, level.size), 1, 5) for name in DIMENSIONS}
    model["avg"] = np.mean([model[name] for name in DIMENSIONS], axis=0)
    human["avg"] = np.mean([human[name] for name in DIMENSIONS], axis=0)
    return LabelledScores(
        run_id=1, label_set="mos", match="item", labelled=len(systems), systems=list(systems),
        model=model, human=human, raters=np.ones(len(systems)),
    )  # fmt: skip


def test_every_row_leaves_out_correlations_of_fewer_than_three_systems_or_items() -> None:
    """The overall row pools 4 dimensions: 2 systems make 8 points, but they are still 2 systems."""
    two = agreement_report(labelled(["s1"] * 5 + ["s2"] * 5))
    for row in two.rows:
        assert (row.system.lcc, row.system.srcc, row.system.ktau) == (None, None, None), row.dimension
        assert row.system.mse is not None and row.utterance.lcc is not None
    assert {row.system.n for row in two.rows} == {2, 8}  # the points are still counted
    table = render_text(agreement_tables(two))
    overall = next(line for line in table.splitlines() if line.startswith("overall"))
    ns = next(line for line in table.splitlines() if line.startswith("NS "))
    assert overall.split()[5:8] == ns.split()[5:8]  # the same blanks as a single dimension's
    three = agreement_report(labelled(["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3))
    assert all(row.system.lcc is not None for row in three.rows)
    pair = agreement_report(labelled(["s1", "s2"]))  # two items: no utterance-level correlation either
    assert all(row.utterance.lcc is None and row.utterance.mse is not None for row in pair.rows)
