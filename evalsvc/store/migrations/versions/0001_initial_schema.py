"""Initial schema: tenants and API keys, model versions, results, runs and items, human labels.

Generated with `alembic revision --autogenerate`, then tidied by hand: dialect-neutral defaults
(`now()`), statuses as VARCHAR + CHECK written out (a migration must not change when a Python enum
does), and indexes created with `op.create_index` (dropping a table drops its indexes).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODE_CHECK = "mode IN ('scores', 'assessment', 'both')"
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _updated_at() -> sa.Column:
    return sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _status(table: str, values: tuple[str, ...]) -> tuple[sa.Column, sa.CheckConstraint]:
    allowed = ", ".join(f"'{value}'" for value in values)
    return (
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.CheckConstraint(f"status IN ({allowed})", name=op.f(f"ck_{table}_status")),
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        _created_at(),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_keys_key_sha256")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("backbone", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=300), nullable=False),
        sa.Column("model_revision", sa.String(length=100), nullable=True),
        sa.Column("weights_sha256", sa.String(length=64), nullable=True),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=True),
        sa.Column("heads_sha256", sa.String(length=64), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=False),
        sa.Column("decoding", JSON, nullable=False),
        sa.Column("packages", JSON, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_model_versions_fingerprint")),
    )
    op.create_index(op.f("ix_model_versions_backbone"), "model_versions", ["backbone"])

    op.create_table(
        "results",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("content_key", sa.String(length=64), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=False),
        sa.Column("response_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("ns", sa.Float(), nullable=True),
        sa.Column("wa", sa.Float(), nullable=True),
        sa.Column("eu", sa.Float(), nullable=True),
        sa.Column("es", sa.Float(), nullable=True),
        sa.Column("avg", sa.Float(), nullable=True),
        sa.Column("assessment", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("query_duration_s", sa.Float(), nullable=True),
        sa.Column("response_duration_s", sa.Float(), nullable=True),
        _created_at(),
        sa.CheckConstraint(MODE_CHECK, name=op.f("ck_results_mode")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_results_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint("content_key", name=op.f("uq_results_content_key")),
    )
    op.create_index(op.f("ix_results_model_version_id"), "results", ["model_version_id"])
    op.create_index(
        op.f("ix_results_query_sha256_response_sha256"), "results", ["query_sha256", "response_sha256"]
    )

    op.create_table(
        "tenant_results",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("result_id", BIG_ID, nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name=op.f("fk_tenant_results_result_id_results"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_results_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "result_id", name=op.f("pk_tenant_results")),
    )
    op.create_index(op.f("ix_tenant_results_result_id"), "tenant_results", ["result_id"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        *_status("runs", ("pending", "running", "done", "failed", "cancelled")),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("done_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        _created_at(),
        _updated_at(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(MODE_CHECK, name=op.f("ck_runs_mode")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_runs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_tenant_id"), "runs", ["tenant_id"])

    op.create_table(
        "run_items",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=False),
        sa.Column("query_ref", sa.Text(), nullable=False),
        sa.Column("response_ref", sa.Text(), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=True),
        sa.Column("dataset", sa.String(length=200), nullable=True),
        sa.Column("emotion", sa.String(length=64), nullable=True),
        sa.Column("meta", JSON, nullable=False),
        *_status("run_items", ("pending", "done", "failed")),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result_id", BIG_ID, nullable=True),
        _created_at(),
        _updated_at(),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_run_items_result_id_results"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_items_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_items")),
        sa.UniqueConstraint("run_id", "item_key", name=op.f("uq_run_items_run_id_item_key")),
    )
    op.create_index(op.f("ix_run_items_run_id_status"), "run_items", ["run_id", "status"])
    op.create_index(op.f("ix_run_items_system"), "run_items", ["system"])
    op.create_index(op.f("ix_run_items_dataset"), "run_items", ["dataset"])
    op.create_index(op.f("ix_run_items_emotion"), "run_items", ["emotion"])
    op.create_index(op.f("ix_run_items_result_id"), "run_items", ["result_id"])

    op.create_table(
        "label_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_label_sets_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_sets")),
        sa.UniqueConstraint("name", name=op.f("uq_label_sets_name")),
    )
    op.create_index(op.f("ix_label_sets_tenant_id"), "label_sets", ["tenant_id"])

    op.create_table(
        "human_labels",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("label_set_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=False),
        sa.Column("rater", sa.String(length=100), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=True),
        sa.Column("response_sha256", sa.String(length=64), nullable=True),
        sa.Column("ns", sa.Float(), nullable=True),
        sa.Column("wa", sa.Float(), nullable=True),
        sa.Column("eu", sa.Float(), nullable=True),
        sa.Column("es", sa.Float(), nullable=True),
        _created_at(),
        _updated_at(),
        *(
            sa.CheckConstraint(
                f"{column} IS NULL OR ({column} >= 1 AND {column} <= 5)",
                name=op.f(f"ck_human_labels_{column}_range"),
            )
            for column in ("ns", "wa", "eu", "es")
        ),
        sa.ForeignKeyConstraint(
            ["label_set_id"],
            ["label_sets.id"],
            name=op.f("fk_human_labels_label_set_id_label_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_human_labels")),
        sa.UniqueConstraint(
            "label_set_id", "item_key", "rater", name=op.f("uq_human_labels_label_set_id_item_key_rater")
        ),
    )
    op.create_index(
        op.f("ix_human_labels_query_sha256_response_sha256"),
        "human_labels",
        ["query_sha256", "response_sha256"],
    )


def downgrade() -> None:
    # Children before parents; each table takes its indexes and constraints with it.
    for table in (
        "human_labels",
        "label_sets",
        "run_items",
        "runs",
        "tenant_results",
        "results",
        "model_versions",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table)
