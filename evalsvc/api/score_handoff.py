"""The API server's side of scoring: the cache first, the model tier for misses; reads; readiness.

A cache hit is answered here, in the API server, with one indexed lookup: it never waits in the model
tier's queue behind batches of real work. Only misses become `ScoringTask`s; the model worker scores
them through the same `evalsvc.scoring` functions, which also catch a pair that became a hit while it
was queued (an identical request finished first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from litserve.utils import WorkerSetupStatus
from starlette.concurrency import run_in_threadpool

from evalsvc.api.inputs import ScoreInput
from evalsvc.api.model_tier import ModelTier, ScoringTask
from evalsvc.api.shared import SharedState
from evalsvc.engine.types import ModelFingerprint
from evalsvc.errors import EvalsvcError, NotFound, NotReady
from evalsvc.judge_scoring import JudgedPair, JudgeService, judge_payload
from evalsvc.protocol import JudgeResponse, ScoreResponse, StoredResult
from evalsvc.scoring import ResultCache, ScoredPair, result_payload
from evalsvc.settings import Settings
from evalsvc.store import ModelVersion, Result, get_result
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.tenants import TenantRef

logger = logging.getLogger(__name__)


class ScoreService:
    def __init__(
        self,
        settings: Settings,
        shared: SharedState,
        tier: ModelTier,
        cache: ResultCache,
        worker_status: Callable[[], Mapping[str, str]],
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.tier = tier
        self.cache = cache
        self.worker_status = worker_status
        self._judges: JudgeService | None = None
        self._judges_lock = threading.Lock()

    async def score(self, tenant: TenantRef, request: ScoreInput) -> ScoreResponse | JudgeResponse:
        """The answer to one `/v1/score` request: the CLI's JSON plus id, cached and metadata (an LLM
        judge's answer when the request names one)."""
        if request.judge != EMPATHYEVAL_JUDGE:
            return await run_in_threadpool(self._judge_with_llm, tenant, request)
        fingerprint = self.shared.model_info.read()
        if fingerprint is None:
            raise NotReady("the model is still loading; retry shortly")
        [hit] = await run_in_threadpool(
            self.cache.lookup, fingerprint, [request.pair], request.mode, tenant_id=tenant.id
        )
        if hit is not None:
            self.shared.metrics.count_pairs(cache_hits=1)
            return ScoreResponse.model_validate(score_payload(hit, fingerprint, request))
        answer = await self.tier.score(
            ScoringTask(tenant.id, request.mode, request.pair), self.settings.request_timeout_s
        )
        if isinstance(answer, EvalsvcError):
            raise answer
        return ScoreResponse.model_validate(score_payload(answer, fingerprint, request))

    def _judge_with_llm(self, tenant: TenantRef, request: ScoreInput) -> JudgeResponse:
        """An LLM judge's answer; the judges are loaded on the first such request.

        An A/B verdict has no id: verdicts are shared content without a tenant's number (only
        llm-assessment results, which live in `results`, do)."""
        with self._judges_lock:
            if self._judges is None:
                self._judges = JudgeService(self.settings, self.cache.store)
            judges = self._judges
        pair = JudgedPair(request.pair.query, request.pair.response, request.reference)
        started = perf_counter()
        [answer] = judges.judge(request.judge, [pair], tenant_id=tenant.id)
        timings = {"decode_ms": request.decode_ms, "judging_ms": (perf_counter() - started) * 1e3}
        fingerprint = judges.fingerprint(judges.spec(request.judge))
        payload = judge_payload(answer, request.judge, fingerprint.to_dict(), pair, timings)
        return JudgeResponse.model_validate(payload | {"id": answer.result_id, "metadata": request.metadata})

    def stored_result(self, tenant: TenantRef, result_id: int) -> StoredResult:
        """A result the tenant received before, by the tenant's own number for it; any other is absent."""
        with self.cache.store.session() as session:
            row = get_result(session, result_id, tenant_id=tenant.id)
            if row is None:
                raise NotFound(f"no result {result_id} for this API key")
            version = session.get_one(ModelVersion, row.model_version_id)
            return StoredResult.model_validate(stored_payload(row, version, result_id))

    def readiness(self) -> tuple[bool, bool]:
        """(model loaded by every worker, database answers); blocking."""
        statuses = dict(self.worker_status())
        model = bool(statuses) and all(status == WorkerSetupStatus.READY for status in statuses.values())
        return model and self.shared.model_info.read() is not None, self._database_answers()

    def _database_answers(self) -> bool:
        try:
            self.cache.store.check()
        except Exception as error:  # a probe: every failure means "not ready", reported in the log
            logger.warning("readiness: database check failed: %s", error)
            return False
        return True


def score_payload(scored: ScoredPair, fingerprint: ModelFingerprint, request: ScoreInput) -> dict[str, Any]:
    """The CLI's JSON (`evalsvc.scoring.result_payload`, with id and cached) plus the metadata."""
    pair = request.pair
    payload = result_payload(scored, fingerprint, pair.query, pair.response, {"decode_ms": request.decode_ms})
    return payload | {"metadata": request.metadata}


def stored_payload(row: Result, version: ModelVersion, result_id: int) -> dict[str, Any]:
    """The stored result `row`, answered under the id its reader knows it by (`result_id`)."""
    payload: dict[str, Any] = {
        "id": result_id,
        "mode": row.mode,
        "scores": row.score_values(),
        "assessment": row.assessment,
        "model": version.provenance(),
        "audio": {
            "query": {"sha256": row.query_sha256, "duration_s": row.query_duration_s},
            "response": {"sha256": row.response_sha256, "duration_s": row.response_duration_s},
        },
    }
    if row.error_code is not None:
        payload["error"] = {"code": row.error_code, "message": row.error_message or ""}
    return payload
