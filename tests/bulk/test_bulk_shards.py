"""Shard planning: every item in exactly one shard, the same shards (and job ids) every time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from evalsvc.bulk.shards import Shard, plan_shards, shards_with_pending

ids = st.lists(st.integers(1, 10_000), unique=True).map(sorted)


@given(ids, st.integers(1, 50))
def test_shards_partition_the_items(item_ids: list[int], size: int) -> None:
    shards = plan_shards(7, item_ids, size)
    covered = [i for shard in shards for i in item_ids if shard.first_item_id <= i <= shard.last_item_id]
    assert covered == item_ids
    assert all(shard.run_id == 7 for shard in shards)
    assert len({shard.job_id("q") for shard in shards}) == len(shards)
    assert plan_shards(7, item_ids, size) == shards


@given(ids, st.integers(1, 50), st.data())
def test_pending_items_map_to_the_shards_holding_them(
    item_ids: list[int], size: int, data: st.DataObject
) -> None:
    shards = plan_shards(1, item_ids, size)
    pending = sorted(data.draw(st.sets(st.sampled_from(item_ids))) if item_ids else [])
    chosen = shards_with_pending(shards, pending)
    holding = [s for s in shards if any(s.first_item_id <= i <= s.last_item_id for i in pending)]
    assert chosen == holding


def test_job_ids_are_valid_rq_ids() -> None:
    assert Shard(12, 1001, 1100).job_id("evalsvc-bulk") == "evalsvc-bulk-run12-items-1001-1100"
