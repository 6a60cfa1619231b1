"""What the LLM judges store: transcripts and emotion labels per clip, verdicts, and the call ledger.

Transcripts and labels are keyed by (audio sha256, model provenance key): a clip is transcribed once
per ASR configuration and reused by every judge, every run and `evalsvc build`. Verdicts (llm-mos,
llm-ab) are keyed by content like `results` (`verdict_key`); llm-assessment results are `results` rows
(`evalsvc.store.results`) under the judge's model version, their structured fields `llm_assessments`
rows beside them. Only successes are stored: a failed call is
asked again by the next run. Every call, failed or not, is a row of the ledger `llm_calls`.

The judge's model version is a `model_versions` row like EmpathyEval's: `fingerprint` the judge
fingerprint's key, `profile` the judge id, `model_id` the LLM model, `decoding` the whole fingerprint
(endpoint, decoding, ASR and emotion models). The store takes plain values: it imports no judge code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evalsvc.store.models import (
    EmotionLabelRow,
    LLMAssessment,
    LLMCallRow,
    LLMVerdict,
    ModelVersion,
    Result,
    RunItem,
    Transcript,
)
from evalsvc.store.results import ensure_version_row, lookup_chunks, rows_by_content_key
from evalsvc.store.upsert import upsert

_VERDICT_SCHEME = "evalsvc-verdict-v1"


def verdict_key(
    fingerprint_key: str, query_sha256: str, response_sha256: str, reference_sha256: str | None
) -> str:
    """The cache key of one verdict: the judge fingerprint, both turns and (A/B) the reference."""
    parts = (_VERDICT_SCHEME, fingerprint_key, query_sha256, response_sha256, reference_sha256 or "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def text_sha256(text: str) -> str:
    """What stands for a turn given as text (a reference transcript) where an audio sha256 would."""
    return hashlib.sha256(f"text:{text}".encode()).hexdigest()


def ensure_judge_version(session: Session, provenance: Mapping[str, Any]) -> int:
    """The `model_versions` id of an LLM judge, from `JudgeFingerprint.to_dict()`."""
    decoding = {name: value for name, value in provenance.items() if name not in ("fingerprint", "packages")}
    return ensure_version_row(
        session,
        {
            "fingerprint": provenance["fingerprint"],
            "backbone": provenance["fingerprint"],
            "model_id": provenance["llm_model"],
            "model_revision": None,
            "weights_sha256": None,
            "adapter_sha256": None,
            "heads_sha256": None,
            "prompt_version": f"{provenance['prompt_version']}/{provenance['prompt_language']}",
            "profile": provenance["judge"],
            "decoding": decoding,
            "packages": provenance["packages"],
        },
    )


def find_transcripts(session: Session, asr_key: str, audio_sha256s: Iterable[str]) -> dict[str, Transcript]:
    found: dict[str, Transcript] = {}
    for chunk in lookup_chunks(audio_sha256s):
        query = select(Transcript).where(Transcript.asr_key == asr_key, Transcript.audio_sha256.in_(chunk))
        found.update((row.audio_sha256, row) for row in session.scalars(query))
    return found


def latest_transcript(session: Session, audio_sha256: str) -> str | None:
    """The newest transcript stored for the clip, by any ASR model (`evalsvc build` reads it)."""
    query = (
        select(Transcript.text)
        .where(Transcript.audio_sha256 == audio_sha256)
        .order_by(Transcript.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def store_transcripts(
    session: Session, asr: Mapping[str, Any], transcripts: Mapping[str, tuple[str, str | None]]
) -> None:
    """`transcripts`: audio sha256 -> (text, language), all made by the ASR model `asr` (provenance)."""
    rows = [
        {"audio_sha256": sha, "asr_key": asr["key"], "text": text, "language": language, "asr": dict(asr)}
        for sha, (text, language) in transcripts.items()
    ]
    upsert(session, Transcript, rows, conflict=["audio_sha256", "asr_key"])


def find_emotion_labels(
    session: Session, model_key: str, audio_sha256s: Iterable[str]
) -> dict[str, EmotionLabelRow]:
    found: dict[str, EmotionLabelRow] = {}
    for chunk in lookup_chunks(audio_sha256s):
        query = select(EmotionLabelRow).where(
            EmotionLabelRow.model_key == model_key, EmotionLabelRow.audio_sha256.in_(chunk)
        )
        found.update((row.audio_sha256, row) for row in session.scalars(query))
    return found


def store_emotion_labels(
    session: Session, model: Mapping[str, Any], labels: Mapping[str, Mapping[str, Any]]
) -> None:
    """`labels`: audio sha256 -> `EmotionLabel.to_dict()`, all read by the classifier `model`."""
    rows = [
        {
            "audio_sha256": sha,
            "model_key": model["key"],
            "label": label["label"],
            "confidence": label["confidence"],
            "probabilities": dict(label["probabilities"]),
            "raw_label": label["raw_label"],
            "model": dict(model),
        }
        for sha, label in labels.items()
    ]
    upsert(session, EmotionLabelRow, rows, conflict=["audio_sha256", "model_key"])


def run_query_emotions(session: Session, run_id: int) -> dict[str, str]:
    """Item key -> the emotion label the run's own judge read in the item's query clip: the stored
    label of that clip by the emotion model in the judge's fingerprint (`model_versions.decoding`).

    Only the +emotion LLM judges read labels; items judged by any other model (EmpathyEval, the judges
    without +emotion) or not judged yet are left out. This, not `run_items.emotion` (the manifest's
    label where it has one), is what the run's model predicted (`report text-agreement`'s SER)."""
    query_sha256 = func.coalesce(Result.query_sha256, LLMVerdict.query_sha256)
    rows = session.execute(
        select(RunItem.item_key, RunItem.model_version_id, query_sha256)
        .outerjoin(Result, RunItem.result_id == Result.id)
        .outerjoin(LLMVerdict, RunItem.verdict_id == LLMVerdict.id)
        .where(RunItem.run_id == run_id, RunItem.model_version_id.is_not(None))
    ).all()
    versions = {version for _, version, _ in rows}
    decodings = session.execute(
        select(ModelVersion.id, ModelVersion.decoding).where(ModelVersion.id.in_(versions))
    )
    emotion_models = {
        version: decoding["emotion"]["key"]
        for version, decoding in decodings
        if isinstance(decoding.get("emotion"), dict)
    }
    clips: dict[str, list[tuple[str, str]]] = {}
    for key, version, sha in rows:
        if version in emotion_models and sha is not None:
            clips.setdefault(emotion_models[version], []).append((key, sha))
    labels: dict[str, str] = {}
    for model_key, items in clips.items():
        found = find_emotion_labels(session, model_key, {sha for _, sha in items})
        labels.update((key, found[sha].label) for key, sha in items if sha in found)
    return labels


@dataclass(frozen=True)
class VerdictRecord:
    """A new llm-mos score or llm-ab verdict; `content_key` comes from `verdict_key()`."""

    content_key: str
    judge: str
    query_sha256: str
    response_sha256: str
    reference_sha256: str | None
    value: int
    forward: int | None = None
    backward: int | None = None
    flipped: bool | None = None


def find_verdicts(session: Session, keys: Iterable[str]) -> dict[str, LLMVerdict]:
    return rows_by_content_key(session, LLMVerdict, keys)


def store_verdicts(
    session: Session, model_version_id: int, records: Sequence[VerdictRecord]
) -> dict[str, int]:
    """Insert new verdicts (first writer wins) and return every record's id by content key."""
    rows = [vars(record) | {"model_version_id": model_version_id} for record in records]
    upsert(session, LLMVerdict, rows, conflict=["content_key"])
    return {key: row.id for key, row in find_verdicts(session, (r.content_key for r in records)).items()}


def store_assessment_fields(session: Session, fields: Mapping[int, Mapping[str, Any]]) -> None:
    """`fields`: `results` id -> the llm-assessment's structured fields (first writer wins)."""
    rows = [{"result_id": result_id, "fields": dict(value)} for result_id, value in fields.items()]
    upsert(session, LLMAssessment, rows, conflict=["result_id"])


def find_assessment_fields(session: Session, result_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The structured fields of llm-assessment results by `results` id; ids without them are absent."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in lookup_chunks(result_ids):
        query = select(LLMAssessment).where(LLMAssessment.result_id.in_(chunk))
        found.update((row.result_id, dict(row.fields)) for row in session.scalars(query))
    return found


@dataclass(frozen=True)
class CallRecord:
    """One ledger row: `LLMCall.to_dict()` fields (`model` as `served_model`) plus the judgement it
    was for and its outcome."""

    content_key: str
    served_model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float
    output_mode: str
    finish_reason: str | None
    response_id: str | None
    system_fingerprint: str | None
    error_code: str | None = None


def record_calls(
    session: Session, model_version_id: int, run_id: int | None, calls: Sequence[CallRecord]
) -> None:
    if calls:
        rows = [vars(call) | {"model_version_id": model_version_id, "run_id": run_id} for call in calls]
        session.execute(LLMCallRow.__table__.insert(), rows)


@dataclass(frozen=True)
class Spend:
    """What a set of runs' LLM calls took; `cost_usd` None when a call's price was unknown."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


def run_spend(session: Session, run_ids: Sequence[int]) -> Spend:
    """The ledger summed over the runs' calls."""
    calls, prompt, completion, cost, unpriced = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(LLMCallRow.prompt_tokens), 0),
            func.coalesce(func.sum(LLMCallRow.completion_tokens), 0),
            func.coalesce(func.sum(LLMCallRow.cost_usd), 0.0),
            func.count().filter(LLMCallRow.cost_usd.is_(None)),
        ).where(LLMCallRow.run_id.in_(list(run_ids)))
    ).one()
    return Spend(int(calls), int(prompt), int(completion), None if unpriced else float(cost))
