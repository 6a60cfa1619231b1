"""Run items can be claimed by the shard runner scoring them (a lease with an expiry).

A shard may be run by two workers at once: `bulk resume` after Redis lost its jobs queues again a
shard a worker is still scoring, and a worker slower than the heartbeat TTL has its job handed on.
Items are claimed batch by batch before they are scored (`evalsvc.store.item_leases`), so the two share the
shard instead of scoring it twice. Both columns are NULL for an unclaimed item, which every existing
item is: nothing is backfilled, and adding nullable columns without a default does not rewrite
`run_items` on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_items") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_items") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_holder")
