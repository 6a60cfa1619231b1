"""Run items carry copies of their result's scores, error code and model version.

A run summary aggregates every item of a run by system, dataset and emotion, a leaderboard by
dataset, system and model version. Reading those from `results` meant hash-joining the items with up
to a million wide result rows, which took most of either report's time on PostgreSQL; with the
copies they read `run_items` alone. Results are immutable (first writer wins) and evalsvc never
deletes them, so a copy taken when an item is linked to its result stays right.

Existing items are filled in from their results, so a database upgraded from 0001 reports exactly
what it reported before. Stop the workers and servers of the older evalsvc first: they would go on
finishing items without the copies. On PostgreSQL `run_items` is locked while the columns are added
and filled (one UPDATE ... FROM over the finished items).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCORE_COLUMNS = ("ns", "wa", "eu", "es", "avg")
# run_items column -> the results column it copies.
COPIED = {
    **{name: name for name in SCORE_COLUMNS},
    "result_error_code": "error_code",
    "model_version_id": "model_version_id",
}
MODEL_VERSION_FK = "fk_run_items_model_version_id_model_versions"


def upgrade() -> None:
    with op.batch_alter_table("run_items") as batch:
        for name in SCORE_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("result_error_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("model_version_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(MODEL_VERSION_FK, "model_versions", ["model_version_id"], ["id"])

    items = sa.table("run_items", sa.column("result_id"), *(sa.column(name) for name in COPIED))
    results = sa.table("results", sa.column("id"), *(sa.column(name) for name in set(COPIED.values())))
    # UPDATE ... FROM (PostgreSQL, and SQLite since 3.33): one join, not a lookup per row and column.
    op.execute(
        items.update()
        .where(items.c.result_id == results.c.id)
        .values({copy: results.c[source] for copy, source in COPIED.items()})
    )


def downgrade() -> None:
    with op.batch_alter_table("run_items") as batch:
        batch.drop_constraint(MODEL_VERSION_FK, type_="foreignkey")
        for name in COPIED:
            batch.drop_column(name)
