"""Model versions record their profile: which judge they are (empathyeval, zero-shot, ...).

The profile (evalsvc.engine.profiles) is part of the fingerprint and of a result's provenance: the
fine-tuned EmpathyEval judge, the zero-shot Instruct or Thinking baseline, or the tiny test model.
Versions written before it have none (NULL): it was not recorded then.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("profile", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("profile")
