"""The scoring service every path calls (CLI, HTTP, bulk workers): cache first, the model for the rest.

    pairs ──▶ content keys ──▶ one lookup in the store ──▶ hits: answered, `cached=True`
                                       │
                                       ▼ misses
                         one engine batch ──▶ one batched upsert ──▶ `cached=False`, with their ids

What is stored: every result the judge produced, including a generation without a valid score line
(`SCORE_PARSE_CODES`): for this model and prompt that is the outcome, and scoring it again gives the
same answer. What is not: any other per-item error, which may be transient; and nothing at all when
the engine raises, since the exception reaches the caller before anything is written.

The model is loaded only for misses: `LazyEngine` knows its fingerprint from the artefact files
(hashes of weights index, adapter, heads, plus prompt version and decoding), so a batch answered
entirely from the store never loads a weight. This module imports neither torch nor transformers;
only loading the engine does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from evalsvc.audio import DecodedAudio
from evalsvc.engine.types import AudioPair, ModelFingerprint, PairResult, Scores
from evalsvc.errors import SCORE_PARSE_CODES, ItemError
from evalsvc.settings import Mode, Settings
from evalsvc.store import (
    Grant,
    Result,
    ResultRecord,
    Store,
    content_key,
    ensure_model_version,
    find_results,
    grant_results,
    store_results,
)

if TYPE_CHECKING:
    from evalsvc.engine.engine import Engine
    from evalsvc.engine.served import ServedJudge

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Scorer(Protocol):
    """What the service needs of an engine; `Engine` and `LazyEngine` both are one."""

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]: ...


@dataclass(frozen=True)
class ScoredPair:
    """One pair's answer: the result, its id in the store (None when not stored), and where it came from."""

    result: PairResult
    id: int | None
    cached: bool


class LazyEngine:
    """An `Engine` (or, with a generation server, a `ServedJudge`) loaded on the first `score` call,
    not before."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Engine | ServedJudge | None = None
        self._file_fingerprint: ModelFingerprint | None = None

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def fingerprint(self) -> ModelFingerprint:
        """From the files until the model is loaded, then the loaded model's own.

        The two agree for local checkpoints and the tiny model; a hub checkpoint not yet downloaded
        only gets its revision and weights hash once loaded, which makes the first batch a miss.
        """
        if self._engine is not None:
            return self._engine.fingerprint
        if self._file_fingerprint is None:
            try:
                from evalsvc.engine.served import judge_fingerprint

                self._file_fingerprint = judge_fingerprint(self._settings)
            except (OSError, ValueError):
                # Artefacts that cannot be hashed cannot be loaded either: the loader says why, clearly.
                return self._load().fingerprint
        return self._file_fingerprint

    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]:
        return self._load().score(pairs, mode)

    def _load(self) -> Engine | ServedJudge:
        if self._engine is None:
            from evalsvc.engine.served import load_judge

            self._engine = load_judge(self._settings)
        return self._engine


class ResultCache:
    """The store seen as a cache of `PairResult`s; remembers model-version ids it has written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._model_versions: dict[str, int] = {}

    def lookup(
        self,
        fingerprint: ModelFingerprint,
        pairs: Sequence[AudioPair],
        mode: Mode,
        *,
        tenant_id: int | None = None,
    ) -> list[ScoredPair | None]:
        """Stored answers for `pairs` (None where there is none), in one query.

        With `tenant_id`, every hit becomes visible to that tenant (it has now received it) and is
        answered as the tenant sees it (`as_seen_by`).
        """
        keys = [_key(pair, fingerprint, mode) for pair in pairs]
        with self.store.session() as session:
            rows = find_results(session, keys)
            hits = dict(
                zip(rows, granted(session, tenant_id, [_from_row(row) for row in rows.values()]), strict=True)
            )
        return [hits.get(key) for key in keys]

    def save(
        self,
        fingerprint: ModelFingerprint,
        pairs: Sequence[AudioPair],
        mode: Mode,
        results: Sequence[PairResult],
        *,
        tenant_id: int | None = None,
    ) -> list[int | None]:
        """Store new results in one transaction; their ids (with `tenant_id`: the tenant's numbers for
        them), or None for results not worth keeping."""
        keys = [_key(pair, fingerprint, mode) for pair in pairs]
        records = [
            _record(key, pair, mode, result)
            for key, pair, result in zip(keys, pairs, results, strict=True)
            if is_cacheable(result)
        ]
        if not records:
            return [None] * len(pairs)
        with self.store.session() as session:
            version_id = self._model_versions.get(fingerprint.key) or ensure_model_version(
                session, fingerprint
            )
            ids = store_results(session, version_id, records)
            if tenant_id is not None:
                grants = grant_results(session, tenant_id, ids.values())
                ids = {key: grants[result_id].number for key, result_id in ids.items()}  # its numbers
        # Remembered only once committed: a rolled-back transaction may have taken the row with it.
        self._model_versions[fingerprint.key] = version_id
        return [
            ids.get(key) if is_cacheable(result) else None for key, result in zip(keys, results, strict=True)
        ]


def score_pairs(
    scorer: Scorer,
    pairs: Sequence[AudioPair],
    mode: Mode,
    *,
    cache: ResultCache | None = None,
    tenant_id: int | None = None,
) -> list[ScoredPair]:
    """Score `pairs`, answering from `cache` what it holds and sending only the rest to `scorer`.

    Without a cache every pair is scored and nothing is stored (`id` None). `tenant_id` records that
    the tenant received these results (visibility) and answers as the tenant sees them (`as_seen_by`);
    it does not change the cache key: the computation is shared.
    """
    if cache is None:
        return [ScoredPair(result, None, cached=False) for result in scorer.score(pairs, mode)]
    answers = cache.lookup(scorer.fingerprint, pairs, mode, tenant_id=tenant_id)
    misses = [index for index, answer in enumerate(answers) if answer is None]
    if misses:
        miss_pairs = [pairs[index] for index in misses]
        results = scorer.score(miss_pairs, mode)
        # Read after scoring: a model loaded by this call may know its revision only now.
        ids = cache.save(scorer.fingerprint, miss_pairs, mode, results, tenant_id=tenant_id)
        for index, result, result_id in zip(misses, results, ids, strict=True):
            answers[index] = ScoredPair(result, result_id, cached=False)
    return [answer for answer in answers if answer is not None]


def isolate_failures(
    score: Callable[[Sequence[Item]], list[Outcome]],
    items: Sequence[Item],
    on_failure: Callable[[Item, Exception], Outcome],
    *,
    reraise: tuple[type[BaseException], ...] = (),
) -> list[Outcome]:
    """`score(items)`; when it raises, the same on each half, down to the single item that fails.

    One poison pair in a batch then costs about 2·log2(batch) extra calls and fails alone
    (`on_failure` makes its outcome) instead of failing its whole batch: the HTTP model tier and the
    bulk shards both score batches this way. Exceptions in `reraise` are about no item in particular
    (the store is down, a job timeout) and propagate at once.
    """
    try:
        return score(items)
    except reraise:
        raise
    except Exception as error:
        if len(items) == 1:
            return [on_failure(items[0], error)]
        middle = len(items) // 2
        return isolate_failures(score, items[:middle], on_failure, reraise=reraise) + isolate_failures(
            score, items[middle:], on_failure, reraise=reraise
        )


def granted(session: Session, tenant_id: int | None, answers: Sequence[ScoredPair]) -> list[ScoredPair]:
    """Record that `tenant_id` received these stored answers, and return them as it sees them
    (`as_seen_by`); the answers unchanged when there is no tenant (the local CLI sees everything)."""
    stored = [answer.id for answer in answers if answer.id is not None]
    if tenant_id is None or not stored:
        return list(answers)
    grants = grant_results(session, tenant_id, stored)
    return [as_seen_by(answer, grants) for answer in answers]


def as_seen_by(scored: ScoredPair, grants: Mapping[int, Grant]) -> ScoredPair:
    """A stored answer as the tenant holding `grants` sees it: by its number, and `cached` only when
    the tenant had received the result before. Whether another tenant scored the pair first must not
    show: the result is shared, the signal is not."""
    grant = grants.get(scored.id) if scored.id is not None else None
    if grant is None:
        return scored
    return replace(scored, id=grant.number, cached=scored.cached and not grant.new)


def result_payload(
    scored: ScoredPair,
    fingerprint: ModelFingerprint,
    query: DecodedAudio,
    response: DecodedAudio,
    timings_ms: dict[str, float],
) -> dict[str, Any]:
    """The documented JSON shape of one scored pair; `timings_ms` adds to the model's own timings."""
    result = scored.result
    payload: dict[str, Any] = {
        "id": scored.id,
        "cached": scored.cached,
        "scores": result.scores.to_dict() if result.scores else None,
        "assessment": result.assessment,
        "model": fingerprint.to_dict(),
        "audio": {
            "query": {"sha256": query.sha256, "duration_s": round(query.duration_s, 4)},
            "response": {"sha256": response.sha256, "duration_s": round(response.duration_s, 4)},
        },
        "timings_ms": {name: round(value, 2) for name, value in (timings_ms | result.timings_ms).items()},
    }
    if result.error is not None:
        payload["error"] = result.error.to_dict()
    return payload


def is_cacheable(result: PairResult) -> bool:
    """A result is kept unless it carries an error that a second attempt might not have."""
    return result.error is None or result.error.code in SCORE_PARSE_CODES


def _key(pair: AudioPair, fingerprint: ModelFingerprint, mode: Mode) -> str:
    return content_key(pair.query.sha256, pair.response.sha256, fingerprint.key, mode)


def _record(key: str, pair: AudioPair, mode: Mode, result: PairResult) -> ResultRecord:
    scores = result.scores
    return ResultRecord(
        content_key=key,
        query_sha256=pair.query.sha256,
        response_sha256=pair.response.sha256,
        mode=mode,
        ns=scores.NS if scores else None,
        wa=scores.WA if scores else None,
        eu=scores.EU if scores else None,
        es=scores.ES if scores else None,
        avg=scores.avg if scores else None,
        assessment=result.assessment,
        error_code=result.error.code if result.error else None,
        error_message=result.error.message if result.error else None,
        # The model time of the batch the pair was scored in.
        latency_ms=result.timings_ms.get("total_ms"),
        query_duration_s=pair.query.duration_s,
        response_duration_s=pair.response.duration_s,
    )


def _from_row(row: Result) -> ScoredPair:
    values = row.score_values()
    scores = Scores(NS=values["NS"], WA=values["WA"], EU=values["EU"], ES=values["ES"]) if values else None
    error = ItemError(row.error_code, row.error_message or "") if row.error_code else None
    return ScoredPair(PairResult(scores=scores, assessment=row.assessment, error=error), row.id, cached=True)
