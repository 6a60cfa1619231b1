"""Runs and their items, human labels, tenants and API keys."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from evalsvc.errors import InvalidParameter
from evalsvc.store import (
    HumanLabel,
    HumanLabelSpec,
    ItemOutcome,
    ItemStatus,
    ModelVersion,
    RunItem,
    RunItemSpec,
    RunStatus,
    Store,
    add_run_items,
    create_label_set,
    create_run,
    create_tenant,
    ensure_model_version,
    issue_api_key,
    record_outcomes,
    refresh_run_counts,
    revoke_api_key,
    store_results,
    tenant_for_api_key,
    upsert_labels,
)
from evalsvc.store.judging import VerdictRecord, ensure_judge_version, store_verdicts
from tests.store.factories import make_fingerprint, make_record, pending_items


def items(count: int, system: str = "sys-a") -> list[RunItemSpec]:
    return [
        RunItemSpec(
            item_key=f"item-{index}",
            query_ref=f"q/{index}.wav",
            response_ref=f"r/{index}.wav",
            system=system,
            dataset="dailytalk",
            emotion="sad" if index % 2 else "happy",
            meta={"turn": index},
        )
        for index in range(count)
    ]


def test_submitting_the_same_items_twice_adds_nothing(store: Store) -> None:
    with store.session() as session:
        run = create_run(session, name="nightly", mode="scores")
        assert add_run_items(session, run.id, items(1_500)) == 1_500
    with store.session() as session:
        assert add_run_items(session, run.id, items(1_600)) == 1_600  # 100 new, 1500 skipped
        stored = session.scalar(select(func.count()).select_from(RunItem).where(RunItem.run_id == run.id))
        first = session.scalars(select(RunItem).where(RunItem.item_key == "item-3")).one()
    assert stored == 1_600
    assert (first.system, first.emotion, first.meta, first.status) == (
        "sys-a",
        "sad",
        {"turn": 3},
        ItemStatus.PENDING,
    )


def test_run_and_item_key_are_unique_in_the_database(store: Store) -> None:
    with store.session() as session:
        run_id = create_run(session, name="r", mode="both").id
        add_run_items(session, run_id, items(1))
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(RunItem(run_id=run_id, item_key="item-0", query_ref="q", response_ref="r"))
        session.flush()
    with store.session() as session:  # the same key in another run is another item
        other = create_run(session, name="r2", mode="both").id
        assert add_run_items(session, other, items(1)) == 1


def test_repeated_keys_in_one_submission_are_a_user_error(store: Store) -> None:
    with store.session() as session:
        run_id = create_run(session, name="r", mode="scores").id
        with pytest.raises(InvalidParameter, match="item-0"):
            add_run_items(session, run_id, items(2) + items(1))


def test_items_of_a_missing_run_are_refused(store: Store) -> None:
    with pytest.raises(IntegrityError), store.session() as session:
        add_run_items(session, 4_242, items(1))


def test_an_unknown_mode_is_refused(store: Store) -> None:
    with pytest.raises(InvalidParameter, match="mode"), store.session() as session:
        create_run(session, name="r", mode="vibes")


def test_outcomes_move_items_and_counts_and_finish_the_run(store: Store) -> None:
    fingerprint = make_fingerprint()
    with store.session() as session:
        run_id = create_run(session, name="r", mode="scores").id
        add_run_items(session, run_id, items(3))
        [result_id] = store_results(
            session, ensure_model_version(session, fingerprint), [make_record(1, fingerprint.key)]
        ).values()
    with store.session() as session:
        first, second, third = pending_items(session, run_id)
        record_outcomes(
            session,
            [
                ItemOutcome(first.id, result_id=result_id),
                ItemOutcome(second.id, error_code="audio_unreadable", error_message="cannot read q/1.wav"),
            ],
        )
        run = refresh_run_counts(session, run_id)
        assert (run.item_count, run.done_count, run.failed_count, run.status) == (3, 1, 1, RunStatus.PENDING)
        assert [item.id for item in pending_items(session, run_id)] == [third.id]
    with store.session() as session:
        record_outcomes(session, [ItemOutcome(third.id, result_id=result_id)])
        run = refresh_run_counts(session, run_id)
        failed = session.get(RunItem, second.id)
    assert (run.done_count, run.status) == (2, RunStatus.DONE)
    assert run.finished_at is not None
    assert failed is not None
    assert (failed.status, failed.attempts, failed.last_error_code) == (
        ItemStatus.FAILED,
        1,
        "audio_unreadable",
    )


def test_an_item_holds_a_copy_of_its_results_scores_and_a_failed_item_none(store: Store) -> None:
    fingerprint = make_fingerprint()
    record = replace(make_record(7, fingerprint.key), ns=1.5, wa=2.25, eu=4.0, es=5.0, avg=3.1875)
    flawed = replace(
        make_record(8, fingerprint.key),
        ns=None,
        wa=None,
        eu=None,
        es=None,
        avg=None,
        error_code="score_line_missing",
    )
    with store.session() as session:
        run_id = create_run(session, name="r", mode="scores").id
        add_run_items(session, run_id, items(3))
        ids = store_results(session, ensure_model_version(session, fingerprint), [record, flawed])
    with store.session() as session:
        scored, unscored, failed = pending_items(session, run_id)
        record_outcomes(
            session,
            [
                ItemOutcome(scored.id, result_id=ids[record.content_key]),
                ItemOutcome(unscored.id, result_id=ids[flawed.content_key]),
                ItemOutcome(failed.id, error_code="audio_unreadable", error_message="cannot read q/2.wav"),
            ],
        )
    copied = (RunItem.ns, RunItem.wa, RunItem.eu, RunItem.es, RunItem.avg, RunItem.result_error_code)
    version = (RunItem.model_version_id,)
    with store.session() as session:
        version_id = ensure_model_version(session, fingerprint)
        rows = session.execute(
            select(*copied, *version).where(RunItem.run_id == run_id).order_by(RunItem.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        (1.5, 2.25, 4.0, 5.0, 3.1875, None, version_id),
        (None, None, None, None, None, "score_line_missing", version_id),
        (None, None, None, None, None, None, None),
    ]


def test_deleting_a_run_deletes_its_items(store: Store) -> None:
    with store.session() as session:
        run = create_run(session, name="r", mode="scores")
        add_run_items(session, run.id, items(3))
    with store.session() as session:
        session.delete(session.get(type(run), run.id))
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(RunItem)) == 0


def test_a_rater_relabelling_an_item_replaces_the_scores(store: Store) -> None:
    with store.session() as session:
        label_set_id = create_label_set(session, "mos-v1", description="pilot").id
        upsert_labels(session, label_set_id, [HumanLabelSpec("item-1", "r1", ns=2, wa=3, eu=4, es=5)])
        upsert_labels(
            session,
            label_set_id,
            [HumanLabelSpec("item-1", "r1", ns=1, wa=1, eu=1, es=1), HumanLabelSpec("item-1", "r1", ns=3)],
        )
    with store.session() as session:
        [label] = session.scalars(select(HumanLabel)).all()
    assert (label.ns, label.wa) == (3, None)  # the last of the batch wins, the whole label is replaced


def test_labels_outside_one_to_five_are_refused(store: Store) -> None:
    with store.session() as session:
        label_set_id = create_label_set(session, "mos-v1").id
        with pytest.raises(InvalidParameter, match="NS=6"):
            upsert_labels(session, label_set_id, [HumanLabelSpec("item-1", "r1", ns=6)])
    with pytest.raises(IntegrityError), store.session() as session:  # and the database agrees
        session.add(HumanLabel(label_set_id=label_set_id, item_key="x", rater="r", es=0.5))
        session.flush()


def test_label_set_names_are_unique(store: Store) -> None:
    with store.session() as session:
        create_label_set(session, "mos-v1")
        with pytest.raises(InvalidParameter, match="already exists"):
            create_label_set(session, "mos-v1")


def test_api_keys_resolve_to_their_tenant_until_revoked(store: Store) -> None:
    with store.session() as session:
        tenant = create_tenant(session, "lab-a")
        key_row, key = issue_api_key(session, tenant.id, "ci")
    assert key.startswith("evs_") and key_row.key_sha256 != key and key not in key_row.prefix + "x"
    with store.session() as session:
        found = tenant_for_api_key(session, key)
        assert found is not None and found.name == "lab-a"
        assert tenant_for_api_key(session, key + "x") is None
        revoke_api_key(session, key_row.id)
    with store.session() as session:
        assert tenant_for_api_key(session, key) is None


def test_tenant_names_are_unique(store: Store) -> None:
    with store.session() as session:
        create_tenant(session, "lab-a")
        with pytest.raises(InvalidParameter, match="already exists"):
            create_tenant(session, "lab-a")


def test_an_llm_verdict_item_holds_its_verdict_and_version_and_keeps_a_manifest_emotion(store: Store) -> None:
    """llm-mos / llm-ab items link a verdict instead of a result: the item is done with a copy of the
    verdict and the judge's model version; a labeller's emotion fills only an emotion the manifest left
    out (item-0 has 'happy' from the manifest, item-2 none)."""
    provenance = {
        "fingerprint": "f" * 64,
        "judge": "llm-ab",
        "llm_model": "gpt-4o",
        "prompt_version": "llm-ab/1",
        "prompt_language": "en",
        "packages": {"openai": "1"},
    }
    verdict = VerdictRecord("k" * 64, "llm-ab", "q" * 64, "r" * 64, "t" * 64, 0, 1, -1, True)
    specs = [replace(spec, emotion=None) if spec.item_key == "item-2" else spec for spec in items(3)]
    with store.session() as session:
        run_id = create_run(session, name="ab", mode="scores", judge="llm-ab").id
        add_run_items(session, run_id, specs)
        version_id = ensure_judge_version(session, provenance)
        verdict_ids = store_verdicts(session, version_id, [verdict])
    with store.session() as session:
        first, second, third = pending_items(session, run_id)
        done, failed = record_outcomes(
            session,
            [
                ItemOutcome(first.id, verdict_id=verdict_ids[verdict.content_key], emotion="anger"),
                ItemOutcome(second.id, error_code="llm_refused", error_message="no"),
                ItemOutcome(third.id, verdict_id=verdict_ids[verdict.content_key], emotion="sadness"),
            ],
        )
        assert (done, failed) == (2, 1)
        run = refresh_run_counts(session, run_id)
        assert (run.done_count, run.failed_count, run.judge) == (2, 1, "llm-ab")
    with store.session() as session:
        rows = session.execute(
            select(RunItem.verdict, RunItem.model_version_id, RunItem.emotion, RunItem.status, RunItem.ns)
            .where(RunItem.run_id == run_id)
            .order_by(RunItem.id)
        ).all()
        profile = session.scalar(select(ModelVersion.profile).where(ModelVersion.id == version_id))
    assert [tuple(row) for row in rows] == [
        (0.0, version_id, "happy", ItemStatus.DONE, None),
        (None, None, "sad", ItemStatus.FAILED, None),
        (0.0, version_id, "sadness", ItemStatus.DONE, None),
    ]
    assert profile == "llm-ab"
