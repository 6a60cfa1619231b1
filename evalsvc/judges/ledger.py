"""Sums over judge results: the token and cost ledger, and the paper's A/B and MOS figures.

The ledger counts every answered call, including those whose reply could not be used (they were
paid for). A cost is None as soon as one call's price is unknown: a partial sum would read as the
total. AB_Score is the mean verdict over the pairs that got one; the flip rate is the share of those
pairs whose two orders disagreed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from evalsvc.judges.judges import ABResult, JudgeResult, MosResult
from evalsvc.llm_client import LLMCall


@dataclass(frozen=True)
class LedgerTotals:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ledger_totals(results: Iterable[JudgeResult]) -> LedgerTotals:
    calls: list[LLMCall] = [call for result in results for call in result.calls]
    costs = [call.cost_usd for call in calls]
    return LedgerTotals(
        calls=len(calls),
        prompt_tokens=sum(call.prompt_tokens for call in calls),
        completion_tokens=sum(call.completion_tokens for call in calls),
        cost_usd=None if any(cost is None for cost in costs) else sum(costs),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class ABSummary:
    pairs: int
    judged: int
    ab_score: float | None
    flip_rate: float | None
    wins: int
    ties: int
    losses: int


def summarize_ab(results: Sequence[ABResult]) -> ABSummary:
    judged = [result for result in results if result.verdict is not None]
    verdicts = [result.verdict for result in judged]
    return ABSummary(
        pairs=len(results),
        judged=len(judged),
        ab_score=sum(verdicts) / len(verdicts) if verdicts else None,  # type: ignore[arg-type]
        flip_rate=sum(bool(result.flipped) for result in judged) / len(judged) if judged else None,
        wins=verdicts.count(1),
        ties=verdicts.count(0),
        losses=verdicts.count(-1),
    )


@dataclass(frozen=True)
class MosSummary:
    pairs: int
    judged: int
    mos: float | None


def summarize_mos(results: Sequence[MosResult]) -> MosSummary:
    scores = [result.score for result in results if result.score is not None]
    return MosSummary(len(results), len(scores), sum(scores) / len(scores) if scores else None)
