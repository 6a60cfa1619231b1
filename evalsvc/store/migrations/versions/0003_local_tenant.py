"""What the local CLI stored belongs to the tenant `local`, which `serve --no-auth` acts as.

Before 0003 the CLI (`evalsvc score`, `bulk run`, `bulk submit`, `labels import`) wrote runs, label sets
and results that belonged to no tenant, so a server on the same database with auth turned off (tenant
`local`) saw none of them. The CLI now writes as `local` (or as the tenant `--tenant` names); this
revision gives the rows written before it to `local` too: tenant-less runs and label sets, and
visibility (`tenant_results`) of every result no tenant had received, and of every result of those
runs. The tenant `local` is created if there is anything to give it. Data only: the schema is
unchanged; a downgrade leaves the rows with `local`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCAL_TENANT = "local"  # evalsvc.store.tenants.LOCAL_TENANT when this revision was written
UNOWNED = """
    SELECT 1 FROM runs WHERE tenant_id IS NULL
    UNION ALL SELECT 1 FROM label_sets WHERE tenant_id IS NULL
    UNION ALL SELECT 1 FROM results
        WHERE NOT EXISTS (SELECT 1 FROM tenant_results t WHERE t.result_id = results.id)
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text(f"SELECT EXISTS ({UNOWNED})")).scalar() in (None, False, 0):
        return
    tenants = sa.table("tenants", sa.column("id"), sa.column("name"))
    local_id = bind.execute(sa.select(tenants.c.id).where(tenants.c.name == LOCAL_TENANT)).scalar()
    if local_id is None:
        local_id = bind.execute(
            tenants.insert().values(name=LOCAL_TENANT).returning(tenants.c.id)
        ).scalar_one()
    local = {"local": local_id}
    bind.execute(
        sa.text(
            "INSERT INTO tenant_results (tenant_id, result_id)"
            " SELECT DISTINCT :local, run_items.result_id FROM run_items JOIN runs ON runs.id = run_items.run_id"
            " WHERE runs.tenant_id IS NULL AND run_items.result_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM tenant_results t WHERE t.tenant_id = :local AND t.result_id = run_items.result_id)"
        ),
        local,
    )
    bind.execute(
        sa.text(
            "INSERT INTO tenant_results (tenant_id, result_id) SELECT :local, results.id FROM results"
            " WHERE NOT EXISTS (SELECT 1 FROM tenant_results t WHERE t.result_id = results.id)"
        ),
        local,
    )
    bind.execute(sa.text("UPDATE runs SET tenant_id = :local WHERE tenant_id IS NULL"), local)
    bind.execute(sa.text("UPDATE label_sets SET tenant_id = :local WHERE tenant_id IS NULL"), local)


def downgrade() -> None:
    """Nothing to undo in the schema; which rows were tenant-less before is not recorded."""
