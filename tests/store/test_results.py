"""Results: content keys, batched idempotent upserts, concurrent writers, provenance, tenancy, FKs."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from evalsvc.errors import NotFound
from evalsvc.store import (
    Grant,
    ModelVersion,
    Result,
    Store,
    content_key,
    create_tenant,
    ensure_model_version,
    find_results,
    get_result,
    grant_results,
    store_results,
    tenant_result_numbers,
)
from tests.store.factories import make_fingerprint, make_record

WORKERS = 4


def count(store: Store, model: type) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_content_key_depends_on_every_part() -> None:
    parts = ("1" * 64, "2" * 64, "3" * 64, "scores")
    key = content_key(*parts)
    assert key == content_key(*parts) and len(key) == 64
    for position, other in enumerate(("9" * 64, "9" * 64, "9" * 64, "both")):
        changed = list(parts)
        changed[position] = other
        assert content_key(*changed) != key
    assert content_key("2" * 64, "1" * 64, "3" * 64, "scores") != key  # query and response are ordered


def test_a_result_round_trips_with_its_provenance(store: Store) -> None:
    fingerprint = make_fingerprint()
    with store.session() as session:
        version_id = ensure_model_version(session, fingerprint)
        ids = store_results(session, version_id, [make_record(7, fingerprint.key)])
    with store.session() as session:
        [row] = find_results(session, ids).values()
        version = session.get(ModelVersion, row.model_version_id)
    assert row.id == ids[row.content_key]
    assert (row.ns, row.avg, row.mode, row.latency_ms) == (1.07, 1.07, "scores", 12.5)
    assert row.created_at is not None
    assert version is not None
    assert version.fingerprint == fingerprint.key
    assert version.backbone == fingerprint.backbone
    assert version.decoding == {"max_new_tokens": 256, "greedy": True}
    assert version.packages == {"evalsvc": "0.1.0"}
    assert version.profile == "empathyeval"


def test_model_versions_are_upserted(store: Store) -> None:
    with store.session() as session:
        first = ensure_model_version(session, make_fingerprint())
        again = ensure_model_version(session, make_fingerprint())
        other = ensure_model_version(session, make_fingerprint(heads_sha256="d" * 64))
    assert first == again != other
    assert count(store, ModelVersion) == 2


def test_batched_upserts_are_idempotent(store: Store) -> None:
    fingerprint = make_fingerprint()
    records = [make_record(index, fingerprint.key) for index in range(2_500)]  # several batches
    with store.session() as session:
        version_id = ensure_model_version(session, fingerprint)
        first = store_results(session, version_id, records)
    with store.session() as session:
        again = store_results(session, version_id, [*records[1_000:], make_record(9_999, fingerprint.key)])
    assert len(first) == 2_500
    assert all(again[key] == first[key] for key in first if key in again)
    assert count(store, Result) == 2_501


def test_a_batch_may_repeat_a_key(store: Store) -> None:
    """The same pair twice in one batch (a manifest listing it twice) is stored once."""
    fingerprint = make_fingerprint()
    record = make_record(5, fingerprint.key)
    with store.session() as session:
        ids = store_results(session, ensure_model_version(session, fingerprint), [record, record])
    assert list(ids) == [record.content_key]
    assert count(store, Result) == 1


def test_one_lookup_finds_a_whole_batch(store: Store) -> None:
    fingerprint = make_fingerprint()
    records = [make_record(index, fingerprint.key) for index in range(1_500)]
    with store.session() as session:
        store_results(session, ensure_model_version(session, fingerprint), records[:1_200])
    with store.session() as session:
        found = find_results(session, [record.content_key for record in records])
    assert set(found) == {record.content_key for record in records[:1_200]}


def _store_one_result(
    url: str, barrier: multiprocessing.synchronize.Barrier, ids: multiprocessing.Queue
) -> None:
    store = Store(url)
    fingerprint = make_fingerprint()
    records = [make_record(index, fingerprint.key) for index in range(200)]
    barrier.wait()
    with store.session() as session:
        result_ids = store_results(session, ensure_model_version(session, fingerprint), records)
    ids.put(result_ids)
    store.dispose()


def test_concurrent_upserts_of_the_same_results_give_one_row_each(store: Store, migrated_url: str) -> None:
    """Several processes store the same 200 results at the same moment: 200 rows, same ids everywhere."""
    context = multiprocessing.get_context("spawn")
    barrier, ids = context.Barrier(WORKERS), context.Queue()
    workers = [
        context.Process(target=_store_one_result, args=(migrated_url, barrier, ids)) for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    seen = [ids.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    assert all(result_ids == seen[0] for result_ids in seen)
    assert len(seen[0]) == 200
    assert count(store, Result) == 200
    assert count(store, ModelVersion) == 1


def test_results_are_visible_only_to_the_tenants_that_asked(store: Store) -> None:
    fingerprint = make_fingerprint()
    with store.session() as session:
        alice, bob = create_tenant(session, "alice").id, create_tenant(session, "bob").id
        [result_id] = store_results(
            session, ensure_model_version(session, fingerprint), [make_record(1, fingerprint.key)]
        ).values()
        assert grant_results(session, alice, [result_id]) == {result_id: Grant(1, new=True)}
        assert grant_results(session, alice, [result_id]) == {result_id: Grant(1, new=False)}  # idempotent
    with store.session() as session:
        assert get_result(session, 1, tenant_id=alice).id == result_id  # by alice's number
        assert get_result(session, 1, tenant_id=bob) is None
        assert get_result(session, result_id) is not None  # the operator sees everything


def test_each_tenant_numbers_its_results_itself(store: Store) -> None:
    """Numbers follow the order in which a tenant receives results, whatever others did before."""
    fingerprint = make_fingerprint()
    with store.session() as session:
        alice, bob = create_tenant(session, "alice").id, create_tenant(session, "bob").id
        version = ensure_model_version(session, fingerprint)
        ids = list(
            store_results(session, version, [make_record(i, fingerprint.key) for i in range(5)]).values()
        )
        grant_results(session, alice, ids)
        assert [grant.number for grant in grant_results(session, bob, ids[3:]).values()] == [1, 2]
        granted = grant_results(session, bob, [ids[0], ids[3]])
    assert granted == {ids[0]: Grant(3, new=True), ids[3]: Grant(1, new=False)}
    with store.session() as session:
        assert tenant_result_numbers(session, alice, ids) == {rid: n for n, rid in enumerate(ids, 1)}
        assert tenant_result_numbers(session, bob, ids) == {ids[3]: 1, ids[4]: 2, ids[0]: 3}


def test_concurrent_grants_of_one_tenant_never_share_a_number(store: Store) -> None:
    fingerprint = make_fingerprint()
    with store.session() as session:
        tenant = create_tenant(session, "alice").id
        version = ensure_model_version(session, fingerprint)
        ids = list(
            store_results(session, version, [make_record(i, fingerprint.key) for i in range(40)]).values()
        )

    def grant(chunk: list[int]) -> None:
        with store.session() as session:
            grant_results(session, tenant, chunk)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(grant, [ids[i : i + 10] for i in range(0, 40, 5)]))  # overlapping chunks
    with store.session() as session:
        numbers = tenant_result_numbers(session, tenant, ids)
    assert set(numbers) == set(ids)
    assert len(set(numbers.values())) == 40


def test_foreign_keys_are_enforced(store: Store) -> None:
    record = make_record(1, make_fingerprint().key)
    with pytest.raises(IntegrityError), store.session() as session:
        store_results(session, 12_345, [record])  # no such model version
    assert count(store, Result) == 0
    with pytest.raises(NotFound), store.session() as session:
        grant_results(session, 999, [1])  # no such tenant
    with store.session() as session:
        tenant = create_tenant(session, "alice").id
    with pytest.raises(IntegrityError), store.session() as session:
        grant_results(session, tenant, [12_345])  # no such result
