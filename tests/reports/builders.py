"""Runs with known, seeded scores, written through the store's own functions, for the report tests.

Every test computes its expectation from the `Item`s it wrote (numpy/scipy on plain lists), never
from the database, so a report is checked against an independent computation of the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evalsvc.store import (
    RunItemSpec,
    Store,
)
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
