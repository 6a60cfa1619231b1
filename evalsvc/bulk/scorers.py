"""How a shard gets its items scored: the engine in this process, or the HTTP model tier.

Both turn a batch of run items into one `ItemOutcome` each: a stored result (the item is done) or an
error code (the item failed, for a reason that is about that item: bad audio, say). A failure that is
about no item in particular (the model tier busy, the database down) is raised instead, so the shard
retries the batch rather than failing items that are fine.

- `LocalItemScorer` decodes the audio and calls `evalsvc.scoring.score_pairs`, the one scoring
  function of the service: the store is asked first, so a pair already scored with this fingerprint,
  in any run, is answered from it and never scored twice; new results are upserted by content key.
- `RemoteItemScorer` sends the files to `evalsvc serve` with `EvalClient` (a batch's requests in
  parallel, for the server's dynamic batching). The server runs the same `score_pairs` against the
  same database and stores the result; the `id` it answers with is the worker's tenant's own number
  for it, so the item is linked to the stored row found by its content key (audio hashes, model
  fingerprint, mode: all in the answer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from evalsvc.audio import AudioLimits, DecodedAudio, decode_audio, name_under
from evalsvc.client import (
    APIError,
    AuthenticationError,
    EvalClient,
    RateLimitedError,
    ScoringTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)
from evalsvc.engine.types import AudioPair
from evalsvc.errors import AudioError, ConfigurationError, NotReady, ServiceBusy, StoreUnavailable
from evalsvc.protocol import ScoreResponse
from evalsvc.scoring import LazyEngine, ResultCache, Scorer, score_pairs
from evalsvc.settings import Mode, Settings
from evalsvc.store import ItemOutcome, Store, content_key, result_ids
from evalsvc.store.run_records import PendingItem

logger = logging.getLogger(__name__)
_READY_TIMEOUT_S = 600.0


class ItemScorer(Protocol):
    def score_items(self, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
        """One outcome per item, in order; raises only for failures that concern no single item."""
        ...


def failed(item: PendingItem, code: str, message: str) -> ItemOutcome:
    return ItemOutcome(item.id, error_code=code, error_message=message)


class LocalItemScorer:
    def __init__(
        self, scorer: Scorer, cache: ResultCache, limits: AudioLimits, roots: Sequence[Path] = ()
    ) -> None:
        self.scorer = scorer
        self.cache = cache
        self.limits = limits
        self.roots = [root.resolve() for root in roots]  # messages name files relative to these

    def score_items(self, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        pairs: list[AudioPair] = []
        scored_items: list[PendingItem] = []
        # Datasets reuse a query across systems: decode each file once per batch.
        decoded: dict[str, DecodedAudio | AudioError] = {}
        for item in items:
            query = self._decode(item.query_path, decoded)
            response = self._decode(item.response_path, decoded)
            if isinstance(query, AudioError):
                outcomes[item.id] = failed(item, query.code, f"query: {query.message}")
            elif isinstance(response, AudioError):
                outcomes[item.id] = failed(item, response.code, f"response: {response.message}")
            else:
                pairs.append(AudioPair(query, response))
                scored_items.append(item)
        if pairs:
            for item, answer in zip(
                scored_items, score_pairs(self.scorer, pairs, mode, cache=self.cache), strict=True
            ):
                if answer.id is not None:
                    outcomes[item.id] = ItemOutcome(item.id, result_id=answer.id)
                else:
                    error = answer.result.error
                    code, message = (error.code, error.message) if error else ("internal_error", "no result")
                    outcomes[item.id] = failed(item, code, message)
        return [outcomes[item.id] for item in items]

    def _decode(self, path: str, decoded: dict[str, DecodedAudio | AudioError]) -> DecodedAudio | AudioError:
        return decode_once(path, decoded, self.limits, self.roots)


def decode_once(
    path: str, decoded: dict[str, DecodedAudio | AudioError], limits: AudioLimits, roots: Sequence[Path]
) -> DecodedAudio | AudioError:
    """The clip at `path` decoded, or its error, remembered in `decoded`: datasets reuse a query
    across systems, so each file is decoded once per batch."""
    if path not in decoded:
        try:
            decoded[path] = decode_audio(Path(path), limits, name=name_under(Path(path), roots))
        except AudioError as error:
            decoded[path] = error
    return decoded[path]


class RemoteItemScorer:
    """Scores through the HTTP model tier; `EvalClient` already retries 429/503 with backoff."""

    def __init__(self, client: EvalClient, concurrency: int, store: Store) -> None:
        self.client = client
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="evalsvc-remote")

    def score_items(self, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
        answers = list(self._pool.map(lambda item: self._score_one(item, mode), items))
        keys = {
            item.id: content_key(
                answer.audio.query.sha256, answer.audio.response.sha256, answer.model.fingerprint, mode
            )
            for item, answer in zip(items, answers, strict=True)
            if isinstance(answer, ScoreResponse)
        }
        with self.store.session() as session:
            stored = result_ids(session, keys.values())
        return [
            answer if isinstance(answer, ItemOutcome) else self._linked(item, stored.get(keys[item.id]))
            for item, answer in zip(items, answers, strict=True)
        ]

    @staticmethod
    def _linked(item: PendingItem, result_id: int | None) -> ItemOutcome:
        if result_id is None:  # about the setup, not the item: every item would fail alike
            raise ConfigurationError(
                f"the model tier scored item {item.key!r} but its result is not in this worker's "
                "database: the worker and `evalsvc serve` must use the same EVALSVC_DATABASE_URL"
            )
        return ItemOutcome(item.id, result_id=result_id)

    def _score_one(self, item: PendingItem, mode: Mode) -> ItemOutcome | ScoreResponse:
        """The server's answer, or the item's failure."""
        try:
            answer = self.client.score(
                Path(item.query_path), Path(item.response_path), mode=mode, metadata={"item": item.key}
            )
        except OSError as error:
            return failed(item, "audio_unreadable", f"cannot read the audio: {error.strerror or error}")
        except AuthenticationError as error:
            raise ConfigurationError(f"the model tier refused the worker's key: {error.message}") from error
        except (RateLimitedError, ServiceUnavailableError, ScoringTimeoutError, TransportError) as error:
            raise ServiceBusy(f"the model tier is unavailable: {error}") from error
        except ServerError as error:
            logger.error("model tier failed on item %s: %s", item.key, error)
            return failed(item, error.code, error.message)
        except APIError as error:  # 4xx: the server says this pair is at fault (bad audio, too large)
            return failed(item, error.code, error.message)
        if answer.id is None:
            error = answer.error
            return failed(
                item, error.code if error else "internal_error", error.message if error else "no result"
            )
        return answer


def is_transient(error: BaseException) -> bool:
    """Worth retrying as is: the model tier is busy or the database is briefly unreachable."""
    return isinstance(error, ServiceBusy | StoreUnavailable)


def build_item_scorer(settings: Settings, store: Store, *, load_now: bool) -> ItemScorer:
    """The model tier at `settings.model_url` when set, else the engine in this process.

    `load_now` (workers) loads and warms the engine, or waits for the model tier to be ready, before
    the first job: a broken setup fails at start, and no batch pays for loading. Otherwise (the CLI)
    the engine loads on the first cache miss, so a run answered from the store never loads it.
    """
    if settings.model_url:
        client = EvalClient(settings.model_url, settings.api_key)
        if load_now:
            try:
                client.wait_ready(timeout_s=_READY_TIMEOUT_S)
            except TransportError as error:
                raise NotReady(f"the model tier at {settings.model_url} is not ready: {error}") from error
        return RemoteItemScorer(client, settings.bulk_batch_size, store)
    limits = AudioLimits.from_settings(settings)
    if not load_now:
        return LocalItemScorer(LazyEngine(settings), ResultCache(store), limits, settings.data_roots)
    from evalsvc.engine.served import load_judge  # torch comes with the in-process engine

    engine = load_judge(settings)
    engine.warmup()
    return LocalItemScorer(engine, ResultCache(store), limits, settings.data_roots)
