"""The LitServe hooks of the model tier; each is a line or two around `BatchScorer`.

`setup` runs in each spawned model worker: it loads and warms the engine there (a broken model fails
the server's start, not the first request), opens the store in that process, and publishes the
fingerprint for the API servers. Requests reach `decode_request` already parsed and decoded by the
API server (`ScoringTask`), so it has nothing left to do; LitServe's default `batch` and `unbatch`
pass the lists of tasks and answers through as they are.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import litserve as ls

from evalsvc.api.model_tier import ScoringTask
from evalsvc.api.shared import SharedState
from evalsvc.engine.placement import replica_device
from evalsvc.lifetime import exit_with_parent
from evalsvc.settings import Settings

SCORE_PATH = "/v1/score"


class ScoringAPI(ls.LitAPI):
    def __init__(
        self, settings: Settings, shared: SharedState, gpu_sets: list[tuple[int, ...]] | None = None
    ) -> None:
        super().__init__(
            max_batch_size=settings.max_batch_size,
            batch_timeout=settings.batch_timeout_s,
            api_path=SCORE_PATH,
        )
        self.settings = settings
        self.shared = shared
        self.gpu_sets = gpu_sets or []
        self._scorer: Any = None  # a BatchScorer, built by `setup` in the worker process

    def setup(self, device: str) -> None:
        # First: a model worker must not outlive a killed `evalsvc serve` (see `evalsvc.lifetime`).
        parent = multiprocessing.parent_process()
        if parent is not None and parent.pid is not None:
            exit_with_parent(parent.pid)
        # Imported here: torch and the model code load in the model workers only.
        from evalsvc.api.batch_scorer import BatchScorer
        from evalsvc.engine.served import load_judge
        from evalsvc.scoring import ResultCache
        from evalsvc.store import Store

        engine = load_judge(
            self.settings.model_copy(update={"device": replica_device(device, self.gpu_sets)})
        )
        engine.warmup()
        self._scorer = BatchScorer(
            engine, ResultCache(Store.from_settings(self.settings)), self.shared.metrics
        )
        self.shared.model_info.publish(engine.fingerprint)

    # Left unannotated: LitServer reads this parameter's annotation as the type of its own route.
    def decode_request(self, request):
        return request

    def predict(self, x: ScoringTask | list[ScoringTask]) -> Any:
        if isinstance(x, ScoringTask):  # max_batch_size 1: LitServe's unbatched loop
            return self._scorer.score([x])[0]
        return self._scorer.score(x)

    def encode_response(self, output: Any) -> Any:
        return output
