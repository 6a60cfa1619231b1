"""How a shard judged by an LLM judge gets its items judged: `JudgeService` in this process.

A run records its judge (`runs.judge`); `JudgeScorers.for_run` hands the shard runner EmpathyEval's
item scorer or one bound to the run's LLM judge, its ledger and its budget. Item by item:

- audio that does not decode fails its item (its audio error code), as for EmpathyEval;
- a reply problem (refused, unreadable, ...) fails its item with its `llm_*` code;
- a transient failure left after the client's own retries (429, 5xx, timeout) fails nothing: the
  successes of the batch are stored, then the error is raised, and the shard retries the batch with
  backoff (what was stored is answered from the cache), then stops the run for a later `resume`;
- an unreachable API, a refused key or model, an exceeded `--max-cost` stop the run as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsvc.audio import AudioLimits, DecodedAudio
from evalsvc.bulk.scorers import ItemScorer, decode_once, failed
from evalsvc.errors import AudioError, LLMRateLimited, LLMServerError, LLMTimeout, ServiceBusy
from evalsvc.judge_scoring import JudgedPair, JudgeService
from evalsvc.settings import Mode, Settings
from evalsvc.store import ItemOutcome, Store
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.run_records import PendingItem

_TRANSIENT: dict[str, type[ServiceBusy]] = {
    error.code: error for error in (LLMRateLimited, LLMServerError, LLMTimeout)
}


@dataclass(frozen=True)
class RunJudging:
    """What a shard runner needs to know of its run to pick and bind a scorer."""

    run_id: int
    judge: str
    max_cost_usd: float | None = None
    budget_runs: tuple[int, ...] = ()
    """The runs whose ledger counts against `max_cost_usd`: the run's judge group (or the run)."""


class LLMItemScorer:
    def __init__(
        self, service: JudgeService, run: RunJudging, limits: AudioLimits, roots: Sequence[Path]
    ) -> None:
        self.service = service
        self.run = run
        self.limits = limits
        self.roots = [root.resolve() for root in roots]

    def score_items(self, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        pairs: list[JudgedPair] = []
        judged: list[PendingItem] = []
        decoded: dict[str, DecodedAudio | AudioError] = {}
        for item in items:
            problem, pair = self._pair(item, decoded)
            if problem is not None:
                outcomes[item.id] = problem
            elif pair is not None:
                pairs.append(pair)
                judged.append(item)
        if pairs:
            answers = self.service.judge(
                self.run.judge,
                pairs,
                run_id=self.run.run_id,
                budget_runs=self.run.budget_runs or (self.run.run_id,),
                max_cost_usd=self.run.max_cost_usd,
            )
            transient = next((a.error for a in answers if a.error and a.error.code in _TRANSIENT), None)
            if transient is not None:
                raise _TRANSIENT[transient.code](transient.message)
            for item, answer in zip(judged, answers, strict=True):
                if answer.error is not None:
                    outcomes[item.id] = failed(item, answer.error.code, answer.error.message)
                    continue
                emotion = answer.texts.query.emotion if answer.texts else None
                outcomes[item.id] = ItemOutcome(
                    item.id,
                    result_id=answer.result_id,
                    verdict_id=answer.verdict_id,
                    emotion=emotion.label if emotion else None,
                )
        return [outcomes[item.id] for item in items]

    def _pair(
        self, item: PendingItem, decoded: dict[str, DecodedAudio | AudioError]
    ) -> tuple[ItemOutcome | None, JudgedPair | None]:
        clips: dict[str, DecodedAudio] = {}
        paths = {"query": item.query_path, "response": item.response_path}
        if item.reference_path:
            paths["reference"] = item.reference_path
        for role, path in paths.items():
            clip = decode_once(path, decoded, self.limits, self.roots)
            if isinstance(clip, AudioError):
                return failed(item, clip.code, f"{role}: {clip.message}"), None
            clips[role] = clip
        reference = clips.get("reference") or item.reference_text
        return None, JudgedPair(clips["query"], clips["response"], reference)


class JudgeScorers:
    """The item scorer for each run: EmpathyEval's, or an LLM judge's sharing one `JudgeService`
    (one LLM client, one Whisper) per process, created on the first LLM-judged shard."""

    def __init__(self, settings: Settings, store: Store, empathyeval: ItemScorer) -> None:
        self.settings = settings
        self.store = store
        self.empathyeval = empathyeval
        self._service: JudgeService | None = None

    def for_run(self, run: RunJudging) -> ItemScorer:
        if run.judge == EMPATHYEVAL_JUDGE:
            return self.empathyeval
        if self._service is None:
            self._service = JudgeService(self.settings, self.store)
        limits = AudioLimits.from_settings(self.settings)
        return LLMItemScorer(self._service, run, limits, self.settings.data_roots)
