"""The structured fields of llm-assessment results (issue 15 review): `llm_assessments`.

A fresh llm-assessment answer carries the Stage-3 fields (emotion captions, true intent, need met,
suggestions); `results` holds only the text and the scores, so a cached answer lost them. One row per
result, keyed by its id, deleted with it. A new table rather than a `results` column: `results` is
EmpathyEval's (its PostgreSQL COPY path names every column), and on SQLite nothing existing is
rebuilt. Results stored before this revision have no row: their cached answers say `assessment: null`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "llm_assessments",
        sa.Column("result_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.PrimaryKeyConstraint("result_id", name="pk_llm_assessments"),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name="fk_llm_assessments_result_id_results", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("llm_assessments")
