"""Runs with known, seeded scores, written through the store's own functions, for the report tests.

Every test computes its expectation from the `Item`s it wrote (numpy/scipy on plain lists), never
from the database, so a report is checked against an independent computation of the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from evalsvc.store import (
    ItemOutcome,
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
from tests.store.factories import make_fingerprint

SYSTEMS = ("sys-a", "sys-b", "sys-c", "sys-d")
DATASETS = ("dailytalk", "esd")
EMOTIONS = ("sad", "angry", "happy", None)
ERRORS = ("audio_unreadable", "audio_too_long")


@dataclass(frozen=True)
class Item:
    """One manifest item and how it went: scored (`scores`), failed (`error`) or still pending."""

    key: str
    system: str | None
    dataset: str | None
    emotion: str | None
    query: str
    response: str
    scores: tuple[float, float, float, float] | None = None
    error: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "done" if self.scores is not None else "failed" if self.error is not None else "pending"

    @property
    def avg(self) -> float | None:
        return None if self.scores is None else sum(self.scores) / 4


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def random_scores(rng: np.random.Generator, *, decimals: int = 2) -> tuple[float, float, float, float]:
    """Four scores in 1-5, rounded so that ties occur (as with real ratings)."""
    values = np.round(rng.uniform(1.0, 5.0, size=4), decimals)
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def random_items(
    rng: np.random.Generator,
    count: int,
    *,
    prefix: str = "item",
    failed: float = 0.05,
    pending: float = 0.03,
) -> list[Item]:
    """Items over several systems, datasets and emotions; a few failed and a few pending."""
    items = []
    for index in range(count):
        draw = rng.random()
        query = f"q{index % (count // 4 + 1)}"
        items.append(
            Item(
                key=f"{prefix}-{index:05d}",
                system=SYSTEMS[int(rng.integers(len(SYSTEMS)))],
                dataset=DATASETS[int(rng.integers(len(DATASETS)))],
                emotion=EMOTIONS[int(rng.integers(len(EMOTIONS)))],
                query=sha(query),
                response=sha(f"{prefix}-r{index}"),
                scores=random_scores(rng) if draw >= failed + pending else None,
                error=ERRORS[index % 2] if draw < failed else None,
            )
        )
    return items


def add_run(
    store: Store,
    items: Sequence[Item],
    *,
    name: str = "run",
    tenant_id: int | None = None,
    judge: str = "judge-1",
) -> int:
    """A run of `items`, scored by the judge `judge` (one model version per judge name)."""
    fingerprint = make_fingerprint(prompt_version=judge)
    with store.session() as session:
        run_id = create_run(session, name=name, mode="scores", tenant_id=tenant_id).id
        add_run_items(
            session,
            run_id,
            [_spec(item) for item in items],
        )
        version = ensure_model_version(session, fingerprint)
        records = {
            item.key: ResultRecord(
                content_key=content_key(item.query, item.response, fingerprint.key, "scores"),
                query_sha256=item.query,
                response_sha256=item.response,
                mode="scores",
                ns=item.scores[0],
                wa=item.scores[1],
                eu=item.scores[2],
                es=item.scores[3],
                avg=item.avg,
            )
            for item in items
            if item.scores is not None
        }
        result_ids = store_results(session, version, list(records.values()))
        item_ids = dict(
            session.execute(select(RunItem.item_key, RunItem.id).where(RunItem.run_id == run_id)).all()
        )
        outcomes = [
            ItemOutcome(item_ids[item.key], result_id=result_ids[records[item.key].content_key])
            if item.scores is not None
            else ItemOutcome(item_ids[item.key], error_code=item.error, error_message="broken")
            for item in items
            if item.status != "pending"
        ]
        record_outcomes(session, outcomes)
        refresh_run_counts(session, run_id)
    return run_id


def _spec(item: Item) -> RunItemSpec:
    return RunItemSpec(
        item_key=item.key,
        query_ref=f"q/{item.key}.wav",
        response_ref=f"r/{item.key}.wav",
        system=item.system,
        dataset=item.dataset,
        emotion=item.emotion,
        meta=item.meta,
    )
