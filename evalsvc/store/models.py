"""The SQL schema: every table the service writes, as typed SQLAlchemy ORM models.

    tenants ──< api_keys                       who may call the HTTP API (keys stored hashed)
    tenants ──< tenant_results >── results     which tenant asked for which (shared) result, under
                                               which number of the tenant's own
    model_versions ──< results                 provenance of every score; results keyed by content
    tenants ──< runs ──< run_items >── results bulk runs: one row per manifest line
    tenants ──< label_sets ──< human_labels    human ratings, joined to results by audio hashes
    transcripts, emotion_labels                what the LLM judges read of a clip: one row per audio
                                               sha256 and model provenance key, shared by every judge
    model_versions ──< llm_verdicts            llm-mos / llm-ab results (llm-assessment ones are
                                               `results`, in EmpathyEval's shape); run_items link them
    results ──○ llm_assessments                an llm-assessment result's structured Stage-3 fields
    model_versions ──< llm_calls >── runs      the LLM ledger: tokens, cost, latency, served model

A run is judged by one judge (`runs.judge`: 'empathyeval' or an LLM judge id); a manifest judged by
several judges is one run per judge, linked by `runs.group_id` (the id of the group's first run).

A result is content: the same audio pair judged by the same model version in the same mode is the
same row for everyone (`content_key` is unique). Tenancy is recorded beside it, in `tenant_results`
and in `runs.tenant_id`, so the cache is shared while visibility stays per tenant. A tenant never sees
`results.id`: it knows a result by `tenant_results.number`, drawn from its own counter
(`tenants.last_result_number`) when it first receives the result, so neither the id of a result
another tenant created first nor the gaps other tenants leave in a shared sequence tell it anything.

The migrations in `store/migrations/versions` must describe exactly these models; `alembic check` (a test)
fails when they drift apart. Constraint names come from `NAMING_CONVENTION` so both backends get the
same names and a downgrade can drop them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from evalsvc.settings import Mode

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHA256_HEX = 64
EMPATHYEVAL_JUDGE = "empathyeval"
MODES: tuple[str, ...] = get_args(Mode)
_MODE_CHECK = "mode IN ({})".format(", ".join(f"'{mode}'" for mode in MODES))

# 64-bit ids where rows can number in the hundreds of millions; SQLite only auto-assigns ids to a
# column declared exactly INTEGER PRIMARY KEY (its 64-bit rowid), so it gets INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL so reports can filter on metadata keys with an index; plain JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def _status_type(enum_class: type[enum.StrEnum]) -> Enum:
    """A VARCHAR plus CHECK constraint: portable, and a new status is a small migration, not ALTER TYPE."""
    return Enum(
        enum_class,
        name="status",
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True), dict[str, Any]: Json}
    # Timestamps set by the database come back with the INSERT/UPDATE (RETURNING), so objects handed
    # out of a closed session are complete instead of expired.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The last `TenantResult.number` handed out: the tenant's own sequence of result ids.
    last_result_number: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKey(Base):
    """An API key of a tenant, stored as its sha256 only; `prefix` lets an operator tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_sha256: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class ModelVersion(Base):
    """The full provenance of one judge configuration; `fingerprint` is `ModelFingerprint.key`."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    backbone: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    model_id: Mapped[str] = mapped_column(String(300))
    model_revision: Mapped[str | None] = mapped_column(String(100))
    weights_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    adapter_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    heads_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    prompt_version: Mapped[str] = mapped_column(String(100))
    profile: Mapped[str | None] = mapped_column(String(40))
    """Which judge (evalsvc.engine.profiles); NULL for versions recorded before profiles existed."""
    decoding: Mapped[dict[str, Any]]
    packages: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    def provenance(self) -> dict[str, Any]:
        """The fingerprint as `ModelFingerprint.to_dict()` gives it (and `/v1/results` shows it)."""
        return {name: getattr(self, name) for name in PROVENANCE_FIELDS}


PROVENANCE_FIELDS: tuple[str, ...] = tuple(
    column.name for column in ModelVersion.__table__.columns if column.name not in ("id", "created_at")
)
"""The fields of `ModelFingerprint.to_dict()`: one column each, under the same name."""


class Result(Base):
    """One judged pair. Immutable once written: the content key fixes every input it depends on."""

    __tablename__ = "results"
    __table_args__ = (
        CheckConstraint(_MODE_CHECK, name="mode"),
        Index(None, "query_sha256", "response_sha256"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_key: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    query_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    response_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    ns: Mapped[float | None] = mapped_column(Float)
    wa: Mapped[float | None] = mapped_column(Float)
    eu: Mapped[float | None] = mapped_column(Float)
    es: Mapped[float | None] = mapped_column(Float)
    avg: Mapped[float | None] = mapped_column(Float)
    assessment: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    query_duration_s: Mapped[float | None] = mapped_column(Float)
    response_duration_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    def score_values(self) -> dict[str, float] | None:
        """NS, WA, EU, ES and avg, or None unless all four were scored (an assessment-only result, or
        a generation without a valid score line, has none): every reader of stored scores asks here."""
        if self.ns is None or self.wa is None or self.eu is None or self.es is None:
            return None
        return {"NS": self.ns, "WA": self.wa, "EU": self.eu, "ES": self.es, "avg": self.avg}  # type: ignore[dict-item]


class TenantResult(Base):
    """Tenant `tenant_id` asked for result `result_id`: what makes a shared result visible to a tenant.

    `number` is the id the tenant knows the result by (the `id` of its answers and of
    `/v1/results/{id}`), unique per tenant.
    """

    __tablename__ = "tenant_results"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    result_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("results.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    number: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Run(Base):
    """A bulk run. Counts are a summary refreshed from `run_items`, which stay the source of truth."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(_MODE_CHECK, name="mode"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[RunStatus] = mapped_column(_status_type(RunStatus), default=RunStatus.PENDING)
    item_count: Mapped[int] = mapped_column(default=0)
    done_count: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    finished_at: Mapped[datetime | None]
    judge: Mapped[str] = mapped_column(
        String(40), server_default=EMPATHYEVAL_JUDGE, default=EMPATHYEVAL_JUDGE
    )
    """'empathyeval' (the model of the settings) or an LLM judge id (evalsvc.judges.JUDGE_IDS)."""
    group_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The id of the group's first run when one manifest was submitted to several judges, else NULL
    (no foreign key: adding one would make SQLite rebuild `runs`, cascading to its items)."""
    max_cost_usd: Mapped[float | None] = mapped_column(Float)
    """The LLM budget of the run (`--max-cost`): no batch starts that could take it beyond this."""


class RunItem(Base):
    """One manifest line of a run: where its audio is, what it is labelled with, and how it went."""

    __tablename__ = "run_items"
    __table_args__ = (
        UniqueConstraint("run_id", "item_key"),
        Index(None, "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(200))
    query_ref: Mapped[str] = mapped_column(Text)
    response_ref: Mapped[str] = mapped_column(Text)
    system: Mapped[str | None] = mapped_column(String(200), index=True)
    dataset: Mapped[str | None] = mapped_column(String(200), index=True)
    emotion: Mapped[str | None] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The ground-truth response of A/B judges: an audio path, or its transcript as text.
    reference_ref: Mapped[str | None] = mapped_column(Text)
    reference_text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ItemStatus] = mapped_column(_status_type(ItemStatus), default=ItemStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    result_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("results.id", ondelete="SET NULL"), index=True
    )
    # Copies of the linked result's scores, error code and model version, written with `result_id`
    # (`record_outcomes`). Run summaries and leaderboards then read one table instead of hash-joining
    # a million results. Results are immutable and evalsvc never deletes one, so the copies stay right.
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    ns: Mapped[float | None] = mapped_column(Float)
    wa: Mapped[float | None] = mapped_column(Float)
    eu: Mapped[float | None] = mapped_column(Float)
    es: Mapped[float | None] = mapped_column(Float)
    avg: Mapped[float | None] = mapped_column(Float)
    result_error_code: Mapped[str | None] = mapped_column(String(64))
    # An llm-mos / llm-ab item links its verdict instead of a result, with a copy of its value.
    verdict_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("llm_verdicts.id", ondelete="SET NULL"), index=True
    )
    verdict: Mapped[float | None] = mapped_column(Float)
    # The claim of the shard runner scoring this pending item now (`evalsvc.store.item_leases`): who holds it
    # and until when, in seconds since the epoch on the database's clock. Cleared when it is recorded.
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class LabelSet(Base):
    """A named collection of human ratings (one study, one rater pool)."""

    __tablename__ = "label_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class HumanLabel(Base):
    """One rater's NS/WA/EU/ES for one item; the audio hashes join it to every model's results."""

    __tablename__ = "human_labels"
    __table_args__ = (
        UniqueConstraint("label_set_id", "item_key", "rater"),
        Index(None, "query_sha256", "response_sha256"),
        *(
            CheckConstraint(f"{column} IS NULL OR ({column} >= 1 AND {column} <= 5)", name=f"{column}_range")
            for column in ("ns", "wa", "eu", "es")
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    label_set_id: Mapped[int] = mapped_column(ForeignKey("label_sets.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(200))
    rater: Mapped[str] = mapped_column(String(100))
    query_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    response_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    ns: Mapped[float | None] = mapped_column(Float)
    wa: Mapped[float | None] = mapped_column(Float)
    eu: Mapped[float | None] = mapped_column(Float)
    es: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Transcript(Base):
    """What the ASR model `asr_key` (its `ModelProvenance.key`) heard in the clip `audio_sha256`."""

    __tablename__ = "transcripts"
    __table_args__ = (UniqueConstraint("audio_sha256", "asr_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    audio_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    asr_key: Mapped[str] = mapped_column(String(SHA256_HEX))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    asr: Mapped[dict[str, Any]]
    """The ASR model's full provenance (`ModelProvenance.to_dict`)."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class EmotionLabelRow(Base):
    """The emotion the classifier `model_key` read in the clip `audio_sha256`, on the paper's labels."""

    __tablename__ = "emotion_labels"
    __table_args__ = (UniqueConstraint("audio_sha256", "model_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    audio_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    model_key: Mapped[str] = mapped_column(String(SHA256_HEX))
    label: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]]
    raw_label: Mapped[str] = mapped_column(String(100))
    model: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LLMVerdict(Base):
    """One llm-mos score (1-5) or llm-ab verdict (1/0/-1), keyed by content like `Result`.

    For A/B, `forward` (the response shown first) and `backward` (shown second) are both kept, from the
    response's side, and `flipped` says they disagreed (then `value` is 0). Failures are never stored.
    """

    __tablename__ = "llm_verdicts"
    __table_args__ = (Index(None, "query_sha256", "response_sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_key: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    judge: Mapped[str] = mapped_column(String(40))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    query_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    response_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    reference_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    """Of the reference audio, or of 'text:' + the reference transcript when given as text."""
    value: Mapped[int] = mapped_column(Integer)
    forward: Mapped[int | None] = mapped_column(Integer)
    backward: Mapped[int | None] = mapped_column(Integer)
    flipped: Mapped[bool | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LLMAssessment(Base):
    """The structured fields of an llm-assessment result (`results` row `result_id`): both emotion
    captions, the true intent, whether the response meets the need, the suggestions and the scores
    (`Assessment.to_dict()`). `results.assessment` keeps the text EmpathyEval's readers expect; these
    make a cached answer equal a fresh one."""

    __tablename__ = "llm_assessments"

    result_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("results.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    fields: Mapped[dict[str, Any]]


class LLMCallRow(Base):
    """One LLM call of a judge: the ledger, apart from results (failed replies too: they were paid)."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    content_key: Mapped[str] = mapped_column(String(SHA256_HEX))
    """The content key of the judgement the call was made for (stored or not)."""
    served_model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    output_mode: Mapped[str] = mapped_column(String(16))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    response_id: Mapped[str | None] = mapped_column(String(200))
    system_fingerprint: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
