"""The LLM judges as a service every path calls (CLI, HTTP, bulk workers): stored, cached, budgeted.

    pairs ──▶ judge fingerprint ──▶ cache keys ──▶ one lookup ──▶ hits: answered, `cached=True`
                                                        │ misses
                                                        ▼
        transcripts / emotion labels (stored per clip, computed for the clips the store lacks)
                                                        │
              budget check (estimate bound + ledger) ──▶ LLMJudge.judge_many ──▶ one transaction:
                                     successes stored, every call in the ledger, `cached=False`

llm-mos and llm-ab results are `llm_verdicts`; llm-assessment results are `results` rows in
EmpathyEval's shape (text ending in the SCORES line, the four scores) under a `model_versions` row whose
`profile` is the judge id, so everything that reads EmpathyEval results reads them unchanged. A failure
is never stored: the next run asks again. Without a store (`score --no-store`) nothing is read or
written. The fingerprint comes from the Whisper and emotion models' files (config, weights hash): the
models themselves are loaded on the first clip the store has no text for, so a fully cached run loads
neither (a FunASR emotion model, or a hub checkpoint not downloaded yet, is loaded to be known).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from evalsvc.audio import DecodedAudio
from evalsvc.errors import InvalidParameter, ItemError, LLMBudgetExceeded
from evalsvc.judges.emotions import EmotionLabel
from evalsvc.judges.estimate import estimate
from evalsvc.judges.fingerprint import JudgeFingerprint, judge_fingerprint
from evalsvc.judges.judges import (
    ABResult,
    AssessmentResult,
    JudgeResult,
    JudgeSpec,
    LLMJudge,
    MosResult,
    PairTexts,
)
from evalsvc.judges.prompts import TurnInput
from evalsvc.judges.provenance import ModelProvenance
from evalsvc.llm_client import LLMCall, LLMClient
from evalsvc.settings import Settings
from evalsvc.store import Result, ResultRecord, Store, content_key, find_results, grant_results, store_results
from evalsvc.store.judging import (
    CallRecord,
    VerdictRecord,
    ensure_judge_version,
    find_assessment_fields,
    find_emotion_labels,
    find_transcripts,
    find_verdicts,
    record_calls,
    run_spend,
    store_assessment_fields,
    store_emotion_labels,
    store_transcripts,
    store_verdicts,
    text_sha256,
    verdict_key,
)
from evalsvc.store.models import LLMVerdict

if TYPE_CHECKING:
    from evalsvc.judges.emotion_models import EmotionLabeller
    from evalsvc.judges.transcripts import WhisperTranscriber

T = TypeVar("T")
ASSESSMENT_MODE = "both"
"""The `results.mode` of llm-assessment results: they carry scores and an assessment, like EmpathyEval's
`both`."""


@dataclass(frozen=True)
class JudgedPair:
    """One pair to judge; `reference` (A/B only) is the ground-truth response as audio or as text."""

    query: DecodedAudio
    response: DecodedAudio
    reference: DecodedAudio | str | None = None


def budget_needs_prices(option: str) -> InvalidParameter:
    """The refusal of an LLM budget (`option` names it: `--max-cost`, `max_cost_usd`) when the LLM
    prices are not set: nothing could tell what a call costs, so nothing could keep the budget."""
    return InvalidParameter(
        f"{option} needs prices: set EVALSVC_LLM_PRICE_INPUT_PER_1M and EVALSVC_LLM_PRICE_OUTPUT_PER_1M"
    )


@dataclass(frozen=True)
class JudgeAnswer:
    """One pair's outcome: `value` (the judge's fields) or `error`; where it is stored, and texts read.

    `result_id` (llm-assessment, a `results` row; with a tenant: the tenant's number for it) or
    `verdict_id` (llm-mos, llm-ab) is None for a failure or when nothing is stored."""

    value: dict[str, Any] | None
    error: ItemError | None
    cached: bool
    result_id: int | None = None
    verdict_id: int | None = None
    texts: PairTexts | None = None

    def to_dict(self) -> dict[str, Any]:
        texts = self.texts
        turns = {} if texts is None else {"query": texts.query, "response": texts.response}
        if texts is not None and texts.reference is not None:
            turns["reference"] = texts.reference
        return {
            "id": self.result_id if self.result_id is not None else self.verdict_id,
            "cached": self.cached,
            "result": self.value,
            "error": self.error.to_dict() if self.error else None,
            "texts": {name: _turn_dict(turn) for name, turn in turns.items()},
        }


class SpeechTexts:
    """Transcripts and emotion labels of clips, read from the store and computed for the rest.

    Thread-safe (the HTTP API calls it from a thread pool): one lock serialises loading and running
    the two models, which use the whole device anyway."""

    def __init__(self, settings: Settings, store: Store | None) -> None:
        self._settings = settings
        self._store = store
        self._transcriber: WhisperTranscriber | None = None
        self._labeller: EmotionLabeller | None = None
        self._asr: ModelProvenance | None = None
        self._emotion: ModelProvenance | None = None
        self._lock = threading.Lock()

    @property
    def asr(self) -> ModelProvenance:
        """The ASR model's provenance, from its files: Whisper is loaded only where they do not tell
        (a hub checkpoint not downloaded yet) or for a clip the store has no transcript of."""
        with self._lock:
            if self._asr is None:
                from evalsvc.judges.transcripts import whisper_provenance  # torch comes with it

                self._asr = whisper_provenance(self._settings) or self._load_transcriber().provenance
            return self._asr

    @property
    def emotion(self) -> ModelProvenance:
        """The emotion model's provenance, from its files where they tell (as `asr`)."""
        with self._lock:
            if self._emotion is None:
                from evalsvc.judges.emotion_models import emotion_provenance

                self._emotion = emotion_provenance(self._settings) or self._load_labeller().provenance
            return self._emotion

    def transcripts(self, clips: Sequence[DecodedAudio]) -> dict[str, str]:
        """Text by audio sha256."""
        asr = self.asr

        def find(session: Session, shas: Sequence[str]) -> dict[str, str]:
            return {sha: row.text for sha, row in find_transcripts(session, asr.key, shas).items()}

        def make(missing: Sequence[DecodedAudio]) -> list[str]:
            made = self._load_transcriber().transcribe(missing)
            if self._store is not None:
                with self._store.session() as session:
                    rows = {clip.sha256: (t.text, t.language) for clip, t in zip(missing, made, strict=True)}
                    store_transcripts(session, asr.to_dict(), rows)
            return [t.text for t in made]

        return self._stored_or_made(clips, find, make)

    def labels(self, clips: Sequence[DecodedAudio]) -> dict[str, EmotionLabel]:
        """Emotion label by audio sha256."""
        model = self.emotion

        def find(session: Session, shas: Sequence[str]) -> dict[str, EmotionLabel]:
            return {
                sha: EmotionLabel(row.label, row.confidence, dict(row.probabilities), row.raw_label)
                for sha, row in find_emotion_labels(session, model.key, shas).items()
            }

        def make(missing: Sequence[DecodedAudio]) -> list[EmotionLabel]:
            made = self._load_labeller().label(missing)
            if self._store is not None:
                with self._store.session() as session:
                    rows = {clip.sha256: label.to_dict() for clip, label in zip(missing, made, strict=True)}
                    store_emotion_labels(session, model.to_dict(), rows)
            return made

        return self._stored_or_made(clips, find, make)

    def _stored_or_made(
        self,
        clips: Sequence[DecodedAudio],
        find: Callable[[Session, Sequence[str]], dict[str, T]],
        make: Callable[[Sequence[DecodedAudio]], list[T]],
    ) -> dict[str, T]:
        """By audio sha256: what the store holds for the clips, and `make` (which stores) for the rest,
        each distinct clip once."""
        unique = {clip.sha256: clip for clip in clips}
        found: dict[str, T] = {}
        if self._store is not None:
            with self._store.session() as session:
                found = find(session, list(unique))
        missing = [clip for sha, clip in unique.items() if sha not in found]
        if missing:
            with self._lock:
                made = make(missing)
            found |= {clip.sha256: value for clip, value in zip(missing, made, strict=True)}
        return found

    def _load_transcriber(self) -> WhisperTranscriber:
        if self._transcriber is None:
            from evalsvc.judges.transcripts import WhisperTranscriber  # torch comes with it

            self._transcriber = WhisperTranscriber.load(self._settings)
        return self._transcriber

    def _load_labeller(self) -> EmotionLabeller:
        if self._labeller is None:
            from evalsvc.judges.emotion_models import load_emotion_labeller

            self._labeller = load_emotion_labeller(self._settings)
        return self._labeller


class JudgeService:
    """The LLM judges of one process: one client (its concurrency bounds every judge), one set of
    speech models, one store."""

    def __init__(self, settings: Settings, store: Store | None, client: LLMClient | None = None) -> None:
        self.settings = settings
        self.store = store
        self.client = client or LLMClient.from_settings(settings)
        self.speech = SpeechTexts(settings, store)

    def spec(self, judge_id: str) -> JudgeSpec:
        return JudgeSpec.parse(judge_id, self.settings.llm_prompt_language)

    def fingerprint(self, spec: JudgeSpec) -> JudgeFingerprint:
        emotion = self.speech.emotion if spec.with_emotion else None
        return judge_fingerprint(spec, self.client.config, self.speech.asr, emotion)

    def judge(
        self,
        judge_id: str,
        pairs: Sequence[JudgedPair],
        *,
        run_id: int | None = None,
        budget_runs: Sequence[int] = (),
        max_cost_usd: float | None = None,
        tenant_id: int | None = None,
    ) -> list[JudgeAnswer]:
        """Answers in input order. Bad input (an A/B pair without a reference) is refused before any
        call. With `max_cost_usd`, a batch whose cost bound would take the ledger of `budget_runs` past
        it raises `LLMBudgetExceeded` before its first call, as does a ledger holding unpriced calls
        (its spend is unknown); `run_id` is what the ledger records.

        The check reads the committed ledger, without a reservation: W processes judging one group at
        once each pass it on the same spend, so the group can end at most (W - 1) x B past the budget,
        B the largest batch's cost bound (batch size x calls per pair x the bound of one call, every
        reply at `max_tokens`; the input side is the estimator's approximate token count)."""
        spec = self.spec(judge_id)
        _check_references(spec, pairs)
        fingerprint = self.fingerprint(spec)
        keys = [_cache_key(spec, fingerprint, pair) for pair in pairs]
        found = self._lookup(spec, keys, tenant_id)
        # What the LLM reads of every pair, hits too (from the store: no model runs for a stored clip),
        # so an answer always shows its transcripts and labels.
        texts = self._texts(spec, pairs)
        answers = [
            replace(answer, texts=text) if answer is not None else None
            for answer, text in zip(found, texts, strict=True)
        ]
        # One question per distinct cache key: a pair on two rows of one batch is asked once.
        misses: dict[str, int] = {}
        for index, answer in enumerate(answers):
            if answer is None:
                misses.setdefault(keys[index], index)
        if not misses:
            return [answer for answer in answers if answer is not None]
        miss_keys = list(misses)
        miss_texts = [texts[index] for index in misses.values()]
        if max_cost_usd is not None:
            self._check_budget(spec, miss_texts, budget_runs, max_cost_usd)
        results = LLMJudge(spec, self.client).judge_many(miss_texts)
        stored = self._save(
            spec, fingerprint, [pairs[i] for i in misses.values()], miss_keys, results, run_id, tenant_id
        )
        fresh = {
            key: _fresh_answer(result, stored.get(key), text)
            for key, text, result in zip(miss_keys, miss_texts, results, strict=True)
        }
        return [
            answer if answer is not None else fresh[key] for key, answer in zip(keys, answers, strict=True)
        ]

    def _lookup(
        self, spec: JudgeSpec, keys: Sequence[str], tenant_id: int | None
    ) -> list[JudgeAnswer | None]:
        if self.store is None:
            return [None] * len(keys)
        with self.store.session() as session:
            if spec.kind == "llm-assessment":
                rows = find_results(session, keys)
                numbers = _numbers(session, tenant_id, {key: row.id for key, row in rows.items()})
                fields = find_assessment_fields(session, (row.id for row in rows.values()))
                return [
                    _assessment_answer(rows[key], numbers[key], fields.get(rows[key].id))
                    if key in rows
                    else None
                    for key in keys
                ]
            verdicts = find_verdicts(session, keys)
            return [_verdict_answer(verdicts[key]) if key in verdicts else None for key in keys]

    def _texts(self, spec: JudgeSpec, pairs: Sequence[JudgedPair]) -> list[PairTexts]:
        clips = [clip for pair in pairs for clip in _clips(pair)]
        transcripts = self.speech.transcripts(clips)
        labels = self.speech.labels(clips) if spec.with_emotion else {}

        def turn(clip: DecodedAudio | str | None) -> TurnInput | None:
            if clip is None:
                return None
            if isinstance(clip, str):
                return TurnInput(clip)
            return TurnInput(transcripts[clip.sha256], labels.get(clip.sha256))

        return [
            PairTexts(turn(pair.query), turn(pair.response), turn(pair.reference))  # type: ignore[arg-type]
            for pair in pairs
        ]

    def _check_budget(
        self, spec: JudgeSpec, texts: Sequence[PairTexts], runs: Sequence[int], max_cost_usd: float
    ) -> None:
        bound = estimate(spec, texts, self.client.config).max_cost_usd
        if bound is None:
            raise budget_needs_prices("--max-cost")
        spent = 0.0
        if self.store is not None and runs:
            with self.store.session() as session:
                spend = run_spend(session, runs)
            if spend.cost_usd is None:
                # Calls made without prices: what they cost is unknown, and reading it as $0 would let
                # the run spend past the budget. Refused, like a budget without prices.
                raise LLMBudgetExceeded(
                    f"the ledger of this run group holds LLM calls made without prices: what they cost is "
                    f"unknown, so --max-cost ${max_cost_usd:g} cannot be enforced; stopped before the calls "
                    "(the budget stays with the group: judge the rest in a new run)"
                )
            spent = spend.cost_usd
        if spent + bound > max_cost_usd:
            raise LLMBudgetExceeded(
                f"the next {len(texts)} pair(s) for {spec.judge_id} could cost up to ${bound:.4f}; with "
                f"${spent:.4f} spent that may pass --max-cost ${max_cost_usd:g}: stopped before the calls"
            )

    def _save(
        self,
        spec: JudgeSpec,
        fingerprint: JudgeFingerprint,
        pairs: Sequence[JudgedPair],
        keys: Sequence[str],
        results: Sequence[JudgeResult],
        run_id: int | None,
        tenant_id: int | None,
    ) -> dict[str, int]:
        """Store the successes and ledger every call, in one transaction; ids by cache key."""
        if self.store is None:
            return {}
        good = [
            (pair, key, result)
            for pair, key, result in zip(pairs, keys, results, strict=True)
            if not result.error
        ]
        with self.store.session() as session:
            version_id = ensure_judge_version(session, fingerprint.to_dict())
            record_calls(
                session,
                version_id,
                run_id,
                [
                    _call_record(key, call, result.error)
                    for key, result in zip(keys, results, strict=True)
                    for call in result.calls
                ],
            )
            if spec.kind == "llm-assessment":
                ids = store_results(
                    session,
                    version_id,
                    [_assessment_record(key, pair, result) for pair, key, result in good],  # type: ignore[arg-type]
                )
                store_assessment_fields(
                    session,
                    {ids[key]: result.assessment.to_dict() for _, key, result in good},  # type: ignore[union-attr]
                )
                numbers = _numbers(session, tenant_id, ids)
                return {key: numbers[key] for key in ids}
            return store_verdicts(
                session, version_id, [_verdict_record(spec, key, pair, result) for pair, key, result in good]
            )


def judge_payload(
    answer: JudgeAnswer,
    judge_id: str,
    fingerprint: dict[str, Any],
    pair: JudgedPair,
    timings_ms: dict[str, float],
) -> dict[str, Any]:
    """The documented JSON of one LLM-judged pair (`evalsvc score --judge`, `POST /v1/score`)."""
    return {
        "judge": judge_id,
        **answer.to_dict(),
        "model": fingerprint,
        "audio": {
            side: {"sha256": clip.sha256, "duration_s": round(clip.duration_s, 4)}
            for side, clip in (("query", pair.query), ("response", pair.response))
        },
        "timings_ms": {name: round(value, 2) for name, value in timings_ms.items()},
    }


def _check_references(spec: JudgeSpec, pairs: Sequence[JudgedPair]) -> None:
    if spec.kind != "llm-ab":
        return
    missing = [index for index, pair in enumerate(pairs) if pair.reference is None]
    if missing:
        raise InvalidParameter(
            f"the judge {spec.judge_id} compares each response with a reference response; pair(s) "
            f"{', '.join(str(i) for i in missing[:5])} have none: supply reference_audio or reference_transcript"
        )
    if spec.with_emotion and any(isinstance(pair.reference, str) for pair in pairs):
        raise InvalidParameter(
            f"the judge {spec.judge_id} labels the reference's emotion from its audio: give reference_audio, "
            "not reference_transcript"
        )


def _cache_key(spec: JudgeSpec, fingerprint: JudgeFingerprint, pair: JudgedPair) -> str:
    query, response = pair.query.sha256, pair.response.sha256
    if spec.kind == "llm-assessment":
        return content_key(query, response, fingerprint.key, ASSESSMENT_MODE)
    return verdict_key(fingerprint.key, query, response, _reference_sha256(pair.reference))


def _reference_sha256(reference: DecodedAudio | str | None) -> str | None:
    if reference is None:
        return None
    return text_sha256(reference) if isinstance(reference, str) else reference.sha256


def _clips(pair: JudgedPair) -> list[DecodedAudio]:
    return [clip for clip in (pair.query, pair.response, pair.reference) if isinstance(clip, DecodedAudio)]


def _numbers(session: Any, tenant_id: int | None, ids: Mapping[str, int]) -> dict[str, int]:
    """Result ids as the tenant knows them (granting them), or the ids themselves without a tenant."""
    if tenant_id is None or not ids:
        return dict(ids)
    grants = grant_results(session, tenant_id, ids.values())
    return {key: grants[result_id].number for key, result_id in ids.items()}


def _assessment_record(key: str, pair: JudgedPair, result: AssessmentResult) -> ResultRecord:
    assert result.assessment is not None
    scores = result.assessment.scores
    return ResultRecord(
        content_key=key,
        query_sha256=pair.query.sha256,
        response_sha256=pair.response.sha256,
        mode=ASSESSMENT_MODE,
        ns=scores.NS,
        wa=scores.WA,
        eu=scores.EU,
        es=scores.ES,
        avg=scores.avg,
        assessment=result.text,
        latency_ms=sum(call.latency_ms for call in result.calls),
        query_duration_s=pair.query.duration_s,
        response_duration_s=pair.response.duration_s,
    )


def _verdict_record(spec: JudgeSpec, key: str, pair: JudgedPair, result: JudgeResult) -> VerdictRecord:
    common = {
        "content_key": key,
        "judge": spec.judge_id,
        "query_sha256": pair.query.sha256,
        "response_sha256": pair.response.sha256,
        "reference_sha256": _reference_sha256(pair.reference),
    }
    if isinstance(result, ABResult):
        assert result.verdict is not None
        return VerdictRecord(
            **common,
            value=result.verdict,
            forward=result.forward,
            backward=result.backward,
            flipped=result.flipped,
        )
    assert isinstance(result, MosResult) and result.score is not None
    return VerdictRecord(**common, value=result.score)


def _call_record(key: str, call: LLMCall, error: ItemError | None) -> CallRecord:
    """The ledger row of `call`: its own fields, the model renamed for what it is (the server's)."""
    fields = call.to_dict()
    fields["served_model"] = fields.pop("model")
    return CallRecord(content_key=key, error_code=error.code if error else None, **fields)


def _fresh_answer(result: JudgeResult, stored_id: int | None, texts: PairTexts) -> JudgeAnswer:
    is_assessment = isinstance(result, AssessmentResult)
    if isinstance(result, AssessmentResult) and result.assessment is not None:
        value = {"scores": result.assessment.scores.to_dict(), "text": result.text} | result.to_dict()
    else:
        value = result.to_dict()
    value = {name: item for name, item in value.items() if name not in ("error", "calls")}
    return JudgeAnswer(
        None if result.error else value,
        result.error,
        cached=False,
        result_id=stored_id if is_assessment else None,
        verdict_id=None if is_assessment else stored_id,
        texts=texts,
    )


def _verdict_answer(row: LLMVerdict) -> JudgeAnswer:
    if row.forward is None and row.backward is None:
        value: dict[str, Any] = {"score": row.value}
    else:
        value = {
            "verdict": row.value,
            "forward": row.forward,
            "backward": row.backward,
            "flipped": row.flipped,
        }
    return JudgeAnswer(value, None, cached=True, verdict_id=row.id)


def _assessment_answer(row: Result, number: int, fields: dict[str, Any] | None) -> JudgeAnswer:
    """A stored llm-assessment as a fresh one reads; `assessment` is None only for a result stored
    before its structured fields were (migration 0008)."""
    value = {"scores": row.score_values(), "text": row.assessment, "assessment": fields}
    return JudgeAnswer(value, None, cached=True, result_id=number)


def _turn_dict(turn: TurnInput) -> dict[str, Any]:
    return {"transcript": turn.transcript, "emotion": turn.emotion.to_dict() if turn.emotion else None}
