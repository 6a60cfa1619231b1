"""Each tenant knows results by numbers of its own (`tenant_results.number`), not by `results.id`.

A result is shared content: the first tenant to submit a pair creates it, later ones get the same
row. Answering with `results.id` told a tenant that someone else had already submitted the exact pair
(an old id, `"cached": true`), and the gaps in the shared sequence showed how busy the others were.
From this revision a tenant's results are numbered from a counter of its own
(`tenants.last_result_number`), the first time it receives each one.

Grants that exist already keep `number = result_id`, and each tenant's counter starts above the
largest of them, so every id a client was given before the upgrade still names the same result.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUMBER_UNIQUE = "uq_tenant_results_tenant_id_number"


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("last_result_number", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("tenant_results") as batch:
        batch.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
    op.execute("UPDATE tenant_results SET number = result_id")
    op.execute(
        "UPDATE tenants SET last_result_number = COALESCE("
        "(SELECT MAX(number) FROM tenant_results WHERE tenant_results.tenant_id = tenants.id), 0)"
    )
    with op.batch_alter_table("tenant_results") as batch:
        batch.alter_column("number", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint(NUMBER_UNIQUE, ["tenant_id", "number"])


def downgrade() -> None:
    with op.batch_alter_table("tenant_results") as batch:
        batch.drop_constraint(NUMBER_UNIQUE, type_="unique")
        batch.drop_column("number")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("last_result_number")
