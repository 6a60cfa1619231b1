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
    RunItem,
    RunItemSpec,
    Store,
    add_run_items,
    create_run,
    record_outcomes,
    refresh_run_counts,
)
from evalsvc.store.judging import VerdictRecord, ensure_judge_version, store_verdicts
from tests.store.factories import SeededItem, seed_run

SYSTEMS = ("sys-a", "sys-b", "sys-c", "sys-d")
DATASETS = ("dailytalk", "esd")
EMOTIONS = ("sad", "angry", "happy", None)
ERRORS = ("audio_unreadable", "audio_too_long")


@dataclass(frozen=True)
class Item:
    """One manifest item and how it went: scored (`scores`), judged without scores (`result_error`),
    failed (`error`) or still pending."""

    key: str
    system: str | None
    dataset: str | None
    emotion: str | None
    query: str
    response: str
    scores: tuple[float, float, float, float] | None = None
    error: str | None = None
    result_error: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.scores is not None or self.result_error is not None:
            return "done"
        return "failed" if self.error is not None else "pending"

    @property
    def error_code(self) -> str | None:
        """The code a summary counts the item under: why it has no scores, if it has none."""
        return self.error or self.result_error

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
    unscored: float = 0.0,
) -> list[Item]:
    """Items over several systems, datasets and emotions; a few failed and a few pending, and
    `unscored` of them judged without a score line."""
    items = []
    for index in range(count):
        draw = rng.random()
        judged_without_scores = failed + pending <= draw < failed + pending + unscored
        query = f"q{index % (count // 4 + 1)}"
        items.append(
            Item(
                key=f"{prefix}-{index:05d}",
                system=SYSTEMS[int(rng.integers(len(SYSTEMS)))],
                dataset=DATASETS[int(rng.integers(len(DATASETS)))],
                emotion=EMOTIONS[int(rng.integers(len(EMOTIONS)))],
                query=sha(query),
                response=sha(f"{prefix}-r{index}"),
                scores=random_scores(rng) if draw >= failed + pending + unscored else None,
                error=ERRORS[index % 2] if draw < failed else None,
                result_error="score_line_missing" if judged_without_scores else None,
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
    seeded = [
        SeededItem(
            _spec(item),
            item.query,
            item.response,
            item.scores,
            error=item.error,
            result_error=item.result_error,
        )
        for item in items
    ]
    return seed_run(store, seeded, mode="scores", name=name, tenant_id=tenant_id, judge=judge)


def _spec(item: Item | VerdictItem) -> RunItemSpec:
    return RunItemSpec(
        item_key=item.key,
        query_ref=f"q/{item.key}.wav",
        response_ref=f"r/{item.key}.wav",
        system=item.system,
        dataset=item.dataset,
        emotion=item.emotion,
        meta=item.meta,
    )


@dataclass(frozen=True)
class VerdictItem:
    """One item of an llm-mos / llm-ab run: judged (`orders`: the MOS score twice, or the A/B verdicts
    of both presentation orders), failed (`error`) or still pending (neither)."""

    key: str
    system: str | None
    dataset: str | None
    emotion: str | None
    orders: tuple[int, int] | None = None
    error: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        """The verdict that stands: agreeing orders, else 0 (a MOS score agrees with itself)."""
        if self.orders is None:
            return None
        forward, backward = self.orders
        return float(forward if forward == backward else 0)

    @property
    def flipped(self) -> bool:
        return self.orders is not None and self.orders[0] != self.orders[1]


def random_verdict_items(rng: np.random.Generator, count: int, *, ab: bool) -> list[VerdictItem]:
    """Judged items over systems, datasets and emotions, with a few failed and a few pending."""
    items = []
    for index in range(count):
        draw = rng.random()
        if ab:
            orders = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
        else:
            score = int(rng.integers(1, 6))
            orders = (score, score)
        items.append(
            VerdictItem(
                key=f"v-{index:04d}",
                system=SYSTEMS[int(rng.integers(len(SYSTEMS)))],
                dataset=DATASETS[int(rng.integers(len(DATASETS)))],
                emotion=EMOTIONS[int(rng.integers(len(EMOTIONS)))],
                orders=orders if draw >= 0.1 else None,
                error="llm_timeout" if draw < 0.06 else None,
            )
        )
    return items


def judge_provenance(judge: str, fingerprint: str) -> dict[str, object]:
    """The model version of an LLM judge (`ensure_judge_version`), as the judge service records it."""
    return {
        "fingerprint": fingerprint,
        "judge": judge,
        "llm_model": "gpt-4o",
        "prompt_version": f"{judge}/1",
        "prompt_language": "en",
        "packages": {},
    }


def add_verdict_run(store: Store, items: Sequence[VerdictItem], judge: str, *, name: str = "verdicts") -> int:
    """A run of the LLM judge `judge` ('llm-mos', 'llm-ab', ...) whose items got the given verdicts,
    written through the store's own functions (`store_verdicts`, `record_outcomes`)."""
    provenance = judge_provenance(judge, sha(f"{name}/{judge}"))
    with store.session() as session:
        run = create_run(session, name=name, mode="scores", judge=judge)
        add_run_items(session, run.id, [_spec(item) for item in items])
        version = ensure_judge_version(session, provenance)
        records = {
            item.key: VerdictRecord(
                sha(f"{name}/{judge}/{item.key}"),
                judge,
                sha(f"q{item.key}"),
                sha(f"r{item.key}"),
                None,
                int(item.value),
                **(
                    {"forward": item.orders[0], "backward": item.orders[1], "flipped": item.flipped}
                    if judge.startswith("llm-ab")
                    else {}
                ),
            )
            for item in items
            if item.orders is not None and item.value is not None
        }
        verdict_ids = store_verdicts(session, version, list(records.values()))
        item_ids = dict(
            session.execute(select(RunItem.item_key, RunItem.id).where(RunItem.run_id == run.id)).all()
        )
        outcomes = [
            ItemOutcome(item_ids[item.key], verdict_id=verdict_ids[records[item.key].content_key])
            if item.key in records
            else ItemOutcome(item_ids[item.key], error_code=item.error, error_message="broken")
            for item in items
            if item.key in records or item.error is not None
        ]
        record_outcomes(session, outcomes)
        refresh_run_counts(session, run.id)
        return run.id
