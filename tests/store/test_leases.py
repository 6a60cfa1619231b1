"""Item leases and the pending-only record, on SQLite and PostgreSQL: the SQL two shard runners share."""

from __future__ import annotations

import time

from sqlalchemy import select

from evalsvc.bulk.shards import Shard
from evalsvc.store import (
    ItemOutcome,
    ItemStatus,
    RunItem,
    Store,
    add_run_items,
    create_run,
    ensure_model_version,
    record_outcomes,
    store_results,
)
from evalsvc.store.item_leases import ShardLease
from tests.store.factories import make_fingerprint, make_record
from tests.store.test_runs import items

TTL_S = 30.0


def shard_of(store: Store, count: int) -> Shard:
    with store.session() as session:
        run_id = create_run(session, name="r", mode="scores").id
        add_run_items(session, run_id, items(count))
        ids = list(session.scalars(select(RunItem.id).where(RunItem.run_id == run_id).order_by(RunItem.id)))
    return Shard(run_id, ids[0], ids[-1])


def ids(claimed: list) -> list[int]:
    return [item.id for item in claimed]


def test_two_runners_of_a_shard_claim_different_items_in_order(store: Store) -> None:
    shard = shard_of(store, 10)
    first, second = (ShardLease(store, shard, TTL_S, holder) for holder in ("a", "b"))
    a = first.claim(4)
    b = second.claim(4)
    assert ids(a) == list(range(shard.first_item_id, shard.first_item_id + 4))
    assert ids(b) == list(range(shard.first_item_id + 4, shard.first_item_id + 8))
    assert [item.key for item in a] == [f"item-{index}" for index in range(4)]
    assert ids(first.claim(4)) == [shard.first_item_id + 8, shard.last_item_id]
    assert second.claim(4) == []  # everything is claimed, nothing is finished
    assert second.pending() == 10


def test_a_claim_is_free_again_when_it_expires_unless_renewed_or_at_once_when_released(store: Store) -> None:
    shard = shard_of(store, 3)
    short = ShardLease(store, shard, 2.0, "short-lived")
    other = ShardLease(store, shard, TTL_S, "other")
    claimed = short.claim(3)
    time.sleep(1.0)
    short.renew()
    time.sleep(1.0)
    assert other.claim(3) == [], "renewed 1 s ago with a 2 s TTL: still held"
    time.sleep(1.5)
    assert ids(other.claim(3)) == ids(claimed), "not renewed for 2.5 s: expired, anyone may claim"
    other.release()
    assert ids(short.claim(3)) == ids(claimed), "released: free at once"


def test_outcomes_are_recorded_only_for_items_still_pending(store: Store) -> None:
    """A slow runner's outcome for an item another runner recorded first changes nothing."""
    shard = shard_of(store, 2)
    fingerprint = make_fingerprint()
    with store.session() as session:
        version = ensure_model_version(session, fingerprint)
        result_ids = list(store_results(session, version, [make_record(1, fingerprint.key)]).values())
    lease = ShardLease(store, shard, TTL_S, "fast")
    first, second = lease.claim(2)
    with store.session() as session:
        recorded = record_outcomes(
            session, [ItemOutcome(first.id, result_id=result_ids[0]), ItemOutcome(second.id, error_code="x")]
        )
    assert recorded == (1, 1)
    with store.session() as session:
        late = record_outcomes(
            session,
            [
                ItemOutcome(first.id, error_code="audio_unreadable"),
                ItemOutcome(second.id, result_id=result_ids[0]),
            ],
        )
        rows = session.execute(
            select(RunItem.status, RunItem.attempts, RunItem.result_id, RunItem.lease_holder)
            .where(RunItem.run_id == shard.run_id)
            .order_by(RunItem.id)
        ).all()
    assert late == (0, 0)
    assert [tuple(row) for row in rows] == [
        (ItemStatus.DONE, 1, result_ids[0], None),
        (ItemStatus.FAILED, 1, None, None),
    ]
    assert lease.pending() == 0 and lease.claim(2) == []
