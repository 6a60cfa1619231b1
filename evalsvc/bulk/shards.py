"""Shards: consecutive runs of a run's items, the unit of queueing, retrying and resuming.

A shard is a range of item ids, `first_item_id..last_item_id`, cut from the run's full item list in
manifest order. Planning only ever cuts the full list (never the pending remainder), so the same run
and shard size always give the same shards, and with them the same job ids: re-submitting, resuming
while jobs are still queued, or resuming after Redis lost everything enqueues each shard at most once.
A shard job carries only its three numbers; what to score is read from SQL when it runs.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Shard:
    run_id: int
    first_item_id: int
    last_item_id: int

    def job_id(self, queue: str) -> str:
        """Deterministic, so a shard is never queued twice; the queue name keeps two deployments
        sharing one Redis (each with its own queue and database) apart."""
        return f"{job_id_prefix(queue, self.run_id)}{self.first_item_id}-{self.last_item_id}"

    def __str__(self) -> str:
        return f"run {self.run_id} items {self.first_item_id}..{self.last_item_id}"


def job_id_prefix(queue: str, run_id: int) -> str:
    """What the job ids of every shard of the run start with."""
    return f"{queue}-run{run_id}-items-"


def plan_shards(run_id: int, item_ids: Sequence[int], size: int) -> list[Shard]:
    """Cut the run's item ids (ascending) into shards of `size` items."""
    return [
        Shard(run_id, item_ids[start], item_ids[min(start + size, len(item_ids)) - 1])
        for start in range(0, len(item_ids), size)
    ]


def shards_with_pending(shards: Sequence[Shard], pending_ids: Sequence[int]) -> list[Shard]:
    """The shards (ascending, from `plan_shards`) holding at least one of `pending_ids` (ascending)."""
    firsts = [shard.first_item_id for shard in shards]
    chosen: dict[Shard, None] = {}
    for item_id in pending_ids:
        index = bisect.bisect_right(firsts, item_id) - 1
        if index >= 0 and item_id <= shards[index].last_item_id:
            chosen[shards[index]] = None
    return list(chosen)
