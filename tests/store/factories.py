"""Realistic store rows without model files: fingerprints, results by number, whole finished runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.store import (
    ItemOutcome,
    ItemStatus,
    ResultRecord,
    RunItem,
    RunItemSpec,
    Store,
    add_run_items,
    content_key,
    create_run,
    ensure_model_version,
    record_outcomes,
    refresh_run_counts,
    store_results,
)
from evalsvc.store.judging import ensure_judge_version


def make_fingerprint(**changes: object) -> ModelFingerprint:
    """A realistic fingerprint without any model files; `changes` override single fields."""
    base = ModelFingerprint(
        model_id="local:model",
        model_revision=None,
        weights_sha256="a" * 64,
        adapter_sha256="b" * 64,
        heads_sha256="c" * 64,
        prompt_version="empathyeval-v1",
        decoding=Decoding(),
        packages={"evalsvc": "0.1.0"},
        profile="empathyeval",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def make_record(index: int, fingerprint_key: str, mode: str = "scores") -> ResultRecord:
    """A distinct stored result for pair number `index`."""
    query, response = f"{index:064x}", f"{index + 1_000_000:064x}"
    value = 1.0 + (index % 400) / 100
    return ResultRecord(
        content_key=content_key(query, response, fingerprint_key, mode),
        query_sha256=query,
        response_sha256=response,
        mode=mode,
        ns=value,
        wa=value,
        eu=value,
        es=value,
        avg=value,
        latency_ms=12.5,
        query_duration_s=2.0,
        response_duration_s=3.0,
    )


@dataclass(frozen=True)
class SeededItem:
    """One run item as a finished run leaves it: scored (`scores`), judged without scores (a result
    with `result_error`, e.g. an assessment without a score line), failed (`error`) or pending."""

    spec: RunItemSpec
    query_sha256: str
    response_sha256: str
    scores: tuple[float, float, float, float] | None = None
    assessment: str | None = None
    error: str | None = None
    result_error: str | None = None


def seed_run(
    store: Store,
    items: Sequence[SeededItem],
    *,
    mode: str,
    name: str = "run",
    tenant_id: int | None = None,
    judge: str = "judge-1",
    llm_judge: Mapping[str, Any] | None = None,
) -> int:
    """A run of `items` written through the store's own API, as a bulk run would leave it.

    Each judge name is one model version, so tests can mix judges; `llm_judge` (a
    `JudgeFingerprint.to_dict()`) makes the results an LLM judge's instead. Returns the run id.
    """
    fingerprint = make_fingerprint(prompt_version=judge)
    with store.session() as session:
        run_id = create_run(session, name=name, mode=mode, tenant_id=tenant_id).id
        add_run_items(session, run_id, [item.spec for item in items])
        if llm_judge is None:
            version, version_key = ensure_model_version(session, fingerprint), fingerprint.key
        else:
            version, version_key = ensure_judge_version(session, llm_judge), llm_judge["fingerprint"]
        records = {
            item.spec.item_key: ResultRecord(
                content_key=content_key(item.query_sha256, item.response_sha256, version_key, mode),
                query_sha256=item.query_sha256,
                response_sha256=item.response_sha256,
                mode=mode,
                **_score_fields(item.scores),
                assessment=item.assessment,
                error_code=item.result_error,
            )
            for item in items
            if item.scores is not None or item.result_error is not None
        }
        result_ids = store_results(session, version, list(records.values()))
        item_ids = dict(
            session.execute(select(RunItem.item_key, RunItem.id).where(RunItem.run_id == run_id)).all()
        )
        outcomes = [
            ItemOutcome(item_ids[key], result_id=result_ids[records[key].content_key])
            if key in records
            else ItemOutcome(item_ids[key], error_code=item.error, error_message="broken")
            for item in items
            if (key := item.spec.item_key) in records or item.error is not None
        ]
        record_outcomes(session, outcomes)
        refresh_run_counts(session, run_id)
    return run_id


def _score_fields(scores: tuple[float, float, float, float] | None) -> dict[str, float | None]:
    if scores is None:
        return dict.fromkeys(("ns", "wa", "eu", "es", "avg"))
    ns, wa, eu, es = scores
    return {"ns": ns, "wa": wa, "eu": eu, "es": es, "avg": sum(scores) / 4}


def pending_items(session: Session, run_id: int) -> list[RunItem]:
    """Items of the run not yet done or failed, in submission order (what the tests read back)."""
    query = select(RunItem).where(RunItem.run_id == run_id, RunItem.status == ItemStatus.PENDING)
    return list(session.scalars(query.order_by(RunItem.id)))
