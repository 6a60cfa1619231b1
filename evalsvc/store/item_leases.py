"""Item leases: which shard runner is scoring an item now, so that no two runners score it at once.

A shard can be run twice at the same time: `bulk resume` after Redis lost its jobs queues again a
shard that a worker is still scoring, and a worker slower than the heartbeat TTL has its job handed
to another. So a runner claims items in SQL, one batch at a time, before scoring them:

    claim    the next `limit` pending items of the shard that no live lease holds, in one UPDATE
    renew    with every heartbeat (after each batch, before each retry wait)
    record   `record_outcomes` writes only items still pending, and clears their lease
    release  on exit (cancelled, failed): what is left is free at once, not after the TTL

Two runners of one shard thus share it instead of scoring it twice, and neither finishes while an
item of the shard is pending: it waits out the other's batch, or its lease if the other died. A dead
runner's items become claimable when its lease expires, the heartbeat TTL after its last sign of
life: the moment its job counts as abandoned. Expiry times are the database's clock, so workers on
machines whose clocks disagree agree on when a lease ends.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Float, and_, func, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from evalsvc.store.handle import Store
from evalsvc.store.models import ItemStatus, RunItem
from evalsvc.store.run_records import PendingItem

_ITEMS = RunItem.__table__
HOLDER_LENGTH = 64


class ItemRange(Protocol):
    """The items a lease covers: a shard of a run (`evalsvc.bulk.shards.Shard`, structurally)."""

    @property
    def run_id(self) -> int: ...

    @property
    def first_item_id(self) -> int: ...

    @property
    def last_item_id(self) -> int: ...


class database_clock(FunctionElement[float]):
    """Now, in seconds since the epoch, by the database server's clock (not this machine's)."""

    type = Float()
    inherit_cache = True


@compiles(database_clock, "postgresql")
def _postgresql_clock(_element: database_clock, _compiler: Any, **_kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM CLOCK_TIMESTAMP()) AS DOUBLE PRECISION)"


@compiles(database_clock, "sqlite")
def _sqlite_clock(_element: database_clock, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"  # the Julian day of 1970-01-01 00:00 UTC


def new_holder() -> str:
    """A name for one run of a shard, that says where it runs: host, process, and a random part."""
    suffix = f":{os.getpid()}:{uuid.uuid4().hex[:12]}"
    return socket.gethostname()[: HOLDER_LENGTH - len(suffix)] + suffix


@dataclass(frozen=True)
class ShardLease:
    """The items of `shard` that this runner (`holder`) claims, for `ttl_s` after each renewal."""

    store: Store
    shard: ItemRange
    ttl_s: float
    holder: str = field(default_factory=new_holder)

    def claim(self, limit: int) -> list[PendingItem]:
        """Claim up to `limit` unclaimed pending items of the shard, in manifest order.

        Candidates first, then the claim: PostgreSQL runs `UPDATE ... WHERE id IN (SELECT ... LIMIT
        n)` as a subplan per row when the subquery reads the clock, which claims the whole shard
        instead of `n` items. What was claimed is read back (no RETURNING: SQLite has it only since
        3.35).
        """
        free = or_(_ITEMS.c.lease_expires_at.is_(None), _ITEMS.c.lease_expires_at < database_clock())
        candidates = (
            select(_ITEMS.c.id)
            .where(self._pending_in_shard(), free)
            .order_by(_ITEMS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: concurrent claimers take different rows
        )
        with self.store.session() as session:
            ids = list(session.scalars(candidates))
            if not ids:
                return []
            session.execute(
                update(_ITEMS)
                # Checked again by the UPDATE itself: on SQLite another claim may come in between.
                .where(_ITEMS.c.id.in_(ids), self._pending_in_shard(), free)
                .values(lease_holder=self.holder, lease_expires_at=database_clock() + self.ttl_s)
            )
            rows = session.execute(
                select(
                    _ITEMS.c.id,
                    _ITEMS.c.item_key,
                    _ITEMS.c.query_ref,
                    _ITEMS.c.response_ref,
                    _ITEMS.c.reference_ref,
                    _ITEMS.c.reference_text,
                )
                .where(_ITEMS.c.id.in_(ids), _ITEMS.c.lease_holder == self.holder)
                .order_by(_ITEMS.c.id)
            )
            return [PendingItem(*row) for row in rows]

    def pending(self) -> int:
        """How many items of the shard are still pending, claimed by anyone or not."""
        with self.store.session() as session:
            return session.scalar(select(func.count()).where(self._pending_in_shard())) or 0

    def renew(self) -> None:
        """Push back the expiry of this runner's claims (the items it has not recorded yet)."""
        with self.store.session() as session:
            session.execute(self._own().values(lease_expires_at=database_clock() + self.ttl_s))

    def release(self) -> None:
        """Give up this runner's remaining claims."""
        with self.store.session() as session:
            session.execute(self._own().values(lease_holder=None, lease_expires_at=None))

    def _own(self) -> Any:
        return update(_ITEMS).where(self._pending_in_shard(), _ITEMS.c.lease_holder == self.holder)

    def _pending_in_shard(self) -> Any:
        shard = self.shard
        return and_(
            _ITEMS.c.run_id == shard.run_id,
            _ITEMS.c.id.between(shard.first_item_id, shard.last_item_id),
            _ITEMS.c.status == ItemStatus.PENDING.value,
        )
