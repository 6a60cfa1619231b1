"""What a model worker does with one dynamic batch: score it, store it, and fail only the bad items.

The batch may mix modes and tenants. Pairs are scored per mode (the engine takes one mode per call)
through `evalsvc.scoring.score_pairs`, the one scoring function, which answers repeats from the store
and stores what it scores; each tenant is then granted the results it asked for, and each answer is
returned as its tenant sees it (its own number for the result; `cached` only if it had it before).

LitServe fails every request of a batch when `predict` raises, so nothing here raises. When the
engine fails on a group, the group is split in halves and retried, which isolates a poison pair in
about 2·log2(batch) extra calls; only the items that still fail get the error as their answer (the
API server raises it there). An `EvalsvcError` (the store is down, say) is about no pair in
particular and is the answer for the whole group at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from evalsvc.api.metrics import SharedMetrics
from evalsvc.api.model_tier import ScoringTask
from evalsvc.errors import EvalsvcError
from evalsvc.scoring import ResultCache, ScoredPair, Scorer, granted, isolate_failures, score_pairs
from evalsvc.settings import Mode

logger = logging.getLogger(__name__)

Answer = ScoredPair | EvalsvcError


class BatchScorer:
    def __init__(self, engine: Scorer, cache: ResultCache, metrics: SharedMetrics) -> None:
        self.engine = engine
        self.cache = cache
        self.metrics = metrics

    def score(self, tasks: Sequence[ScoringTask]) -> list[Answer]:
        """One answer per task, in order; never raises."""
        self.metrics.observe_batch_size(len(tasks))
        answers: dict[int, Answer] = {}
        by_mode: dict[Mode, list[int]] = defaultdict(list)
        for index, task in enumerate(tasks):
            by_mode[task.mode].append(index)
        for mode, indices in by_mode.items():
            answers.update(zip(indices, self._score_isolated(tasks, indices, mode), strict=True))
        scored = [answers[index] for index in range(len(tasks))]
        ordered = self._granted(tasks, scored)
        self.metrics.count_pairs(  # the operator's view: hits of the shared store, whoever scored first
            cache_hits=sum(isinstance(a, ScoredPair) and a.cached for a in scored),
            cache_misses=sum(isinstance(a, ScoredPair) and not a.cached for a in scored),
            errors=sum(isinstance(a, EvalsvcError) for a in ordered),
        )
        return ordered

    def _score_isolated(self, tasks: Sequence[ScoringTask], indices: list[int], mode: Mode) -> list[Answer]:
        return isolate_failures(
            lambda group: self._score_group(tasks, group, mode),
            indices,
            lambda _i, error: _internal_error(error),
        )

    def _score_group(self, tasks: Sequence[ScoringTask], indices: Sequence[int], mode: Mode) -> list[Answer]:
        try:
            scored = score_pairs(self.engine, [tasks[i].pair for i in indices], mode, cache=self.cache)
        except EvalsvcError as error:  # the store is down, say: not about any one pair
            return [error] * len(indices)
        engine_ms = [answer.result.timings_ms.get("total_ms", 0.0) for answer in scored if not answer.cached]
        if engine_ms:
            self.metrics.observe_model_seconds(max(engine_ms) / 1e3)  # the batch's time, on every item
        return list(scored)

    def _granted(self, tasks: Sequence[ScoringTask], answers: list[Answer]) -> list[Answer]:
        """Record which tenant received which result (cache hits and new results alike), and answer
        each task as its tenant sees the result."""
        by_tenant: dict[int, list[int]] = defaultdict(list)
        for index, (task, answer) in enumerate(zip(tasks, answers, strict=True)):
            if isinstance(answer, ScoredPair) and answer.id is not None:
                by_tenant[task.tenant_id].append(index)
        if not by_tenant:
            return answers
        seen: dict[int, Answer] = {}
        try:
            with self.cache.store.session() as session:
                for tenant_id, indices in by_tenant.items():
                    stored = [answers[index] for index in indices]
                    seen.update(zip(indices, granted(session, tenant_id, stored), strict=True))  # type: ignore[arg-type]
        except EvalsvcError as error:
            # A result the tenant could not fetch again must not be reported as stored for it.
            logger.error("could not record tenant access to results: %s", error.message)
            return [error if isinstance(answer, ScoredPair) else answer for answer in answers]
        return [seen.get(index, answer) for index, answer in enumerate(answers)]


def _internal_error(error: Exception) -> EvalsvcError:
    logger.exception("the model failed on one pair", exc_info=error)
    return EvalsvcError(f"the model failed on this pair ({type(error).__name__}); it has been logged")
