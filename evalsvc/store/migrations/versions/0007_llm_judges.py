"""The LLM judges (issue 15): transcripts, emotion labels, verdicts, the call ledger, judged runs.

- `transcripts` and `emotion_labels`: one row per clip (audio sha256) and model provenance key, read
  by every LLM judge and by `evalsvc build`.
- `llm_verdicts`: llm-mos scores and llm-ab verdicts (both orders and whether they flipped), keyed by
  content like `results`; llm-assessment results are `results` rows in EmpathyEval's shape.
- `llm_calls`: the ledger of every LLM call (tokens, cost, latency, served model), apart from results.
- `runs.judge` says which judge a run is judged by ('empathyeval' for every existing run),
  `runs.group_id` links the runs of one manifest judged by several judges, `runs.max_cost_usd` is a
  run's LLM budget; `run_items` gain the A/B reference and the link to (and a copy of) their verdict.

Every new column is nullable or has a server default: nothing is rewritten or backfilled.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SHA = sa.String(length=64)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("audio_sha256", SHA, nullable=False),
        sa.Column("asr_key", SHA, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("asr", JSON, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_transcripts"),
        sa.UniqueConstraint("audio_sha256", "asr_key", name="uq_transcripts_audio_sha256_asr_key"),
    )
    op.create_table(
        "emotion_labels",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("audio_sha256", SHA, nullable=False),
        sa.Column("model_key", SHA, nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probabilities", JSON, nullable=False),
        sa.Column("raw_label", sa.String(length=100), nullable=False),
        sa.Column("model", JSON, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_emotion_labels"),
        sa.UniqueConstraint("audio_sha256", "model_key", name="uq_emotion_labels_audio_sha256_model_key"),
    )
    op.create_table(
        "llm_verdicts",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("content_key", SHA, nullable=False),
        sa.Column("judge", sa.String(length=40), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("query_sha256", SHA, nullable=False),
        sa.Column("response_sha256", SHA, nullable=False),
        sa.Column("reference_sha256", SHA, nullable=True),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("forward", sa.Integer(), nullable=True),
        sa.Column("backward", sa.Integer(), nullable=True),
        sa.Column("flipped", sa.Boolean(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_llm_verdicts"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_llm_verdicts_model_version_id_model_versions",
        ),
        sa.UniqueConstraint("content_key", name="uq_llm_verdicts_content_key"),
    )
    op.create_index("ix_llm_verdicts_model_version_id", "llm_verdicts", ["model_version_id"])
    op.create_index(
        "ix_llm_verdicts_query_sha256_response_sha256", "llm_verdicts", ["query_sha256", "response_sha256"]
    )

    # Columns only, no constraint: on SQLite a new foreign key rebuilds `runs`, and dropping the old
    # table would cascade to every run item. `group_id` is a plain (indexed) run id for that reason.
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.add_column(
            sa.Column("judge", sa.String(length=40), server_default="empathyeval", nullable=False)
        )
        batch.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_cost_usd", sa.Float(), nullable=True))
    op.create_index("ix_runs_group_id", "runs", ["group_id"])

    op.create_table(
        "llm_calls",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("content_key", SHA, nullable=False),
        sa.Column("served_model", sa.String(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("output_mode", sa.String(length=16), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("response_id", sa.String(length=200), nullable=True),
        sa.Column("system_fingerprint", sa.String(length=200), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_llm_calls"),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name="fk_llm_calls_model_version_id_model_versions"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_llm_calls_run_id_runs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_llm_calls_model_version_id", "llm_calls", ["model_version_id"])
    op.create_index("ix_llm_calls_run_id", "llm_calls", ["run_id"])

    with op.batch_alter_table("run_items") as batch:
        batch.add_column(sa.Column("reference_ref", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reference_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("verdict_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("verdict", sa.Float(), nullable=True))
        batch.create_foreign_key(
            "fk_run_items_verdict_id_llm_verdicts",
            "llm_verdicts",
            ["verdict_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_run_items_verdict_id", ["verdict_id"])


def downgrade() -> None:
    with op.batch_alter_table("run_items") as batch:
        batch.drop_index("ix_run_items_verdict_id")
        batch.drop_constraint("fk_run_items_verdict_id_llm_verdicts", type_="foreignkey")
        for name in ("verdict", "verdict_id", "reference_text", "reference_ref"):
            batch.drop_column(name)
    op.drop_table("llm_calls")
    op.drop_index("ix_runs_group_id", table_name="runs")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a rebuild: dropping the old `runs` table would
    # cascade to every run item.
    with op.batch_alter_table("runs", recreate="never") as batch:
        for name in ("max_cost_usd", "group_id", "judge"):
            batch.drop_column(name)
    op.drop_table("llm_verdicts")
    op.drop_table("emotion_labels")
    op.drop_table("transcripts")
