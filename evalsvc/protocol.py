"""The wire protocol: request, response and error models of the HTTP API (`/openapi.json`).

The server (`evalsvc.api`) answers with these models and the client (`evalsvc.client`) reads them;
this module imports neither, only `settings` for the mode names, so a client needs no server code.
The reports' answers are the models of `evalsvc.reports.schemas`, built by the reports themselves.

The response of `/v1/score` is the CLI's JSON (`evalsvc.scoring.result_payload`) plus `id` (the
stored result) and `cached`, so one parser reads both.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from evalsvc.settings import Mode

MAX_METADATA_BYTES = 64 * 1024
"""Metadata is a label for the caller (run name, system, item id), not a place for data."""
NUL_FREE = r"^[^\x00]*$"
"""Text that reaches the database may not hold NUL (U+0000): PostgreSQL can neither store nor compare it."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NUL_FREE)]
"""A name of something stored (system, dataset, label set, run): the width of its column, no NUL."""
JudgeName = Literal[
    "empathyeval",
    "llm-mos",
    "llm-mos+emotion",
    "llm-ab",
    "llm-ab+emotion",
    "llm-assessment",
    "llm-assessment+emotion",
]
"""`empathyeval` and `evalsvc.judges.JUDGE_IDS` (a test checks they agree)."""
_JUDGE = "|".join(name.replace("+", r"\+") for name in get_args(JudgeName))
JUDGE_LIST_PATTERN = rf"^({_JUDGE})(,({_JUDGE}))*$"
"""One judge, or several separated by commas (`POST /v1/runs`: one run each, linked as a group)."""
ReferenceText = Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=NUL_FREE)]


class AudioSource(BaseModel):
    """One clip: its encoded bytes in base64, or a path under the server's data roots."""

    model_config = ConfigDict(extra="forbid")

    audio_b64: str | None = Field(None, description="The encoded file (wav, flac, ogg, mp3), base64.")
    path: str | None = Field(
        None,
        description="A file on the server, under one of EVALSVC_DATA_ROOTS (off when none is configured).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AudioSource:
        if (self.audio_b64 is None) == (self.path is None):
            raise ValueError("give exactly one of audio_b64 or path")
        return self


class ScoreRequest(BaseModel):
    """The `application/json` body of `POST /v1/score`."""

    model_config = ConfigDict(extra="forbid")

    query: AudioSource = Field(description="The user's spoken query.")
    response: AudioSource = Field(description="The system's spoken response being judged.")
    mode: Mode = Field("scores", description="scores (heads), assessment (text) or both.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="A JSON object echoed back in the answer (at most 64 KiB)."
    )
    judge: JudgeName = Field(
        "empathyeval",
        description="Who judges: empathyeval (the served model; `mode` applies) or an LLM judge over "
        "Whisper transcripts (llm-mos, llm-ab, llm-assessment, each also +emotion; the answer is then a "
        "JudgeResponse).",
    )
    reference: AudioSource | None = Field(
        None, description="The ground-truth spoken response, for the llm-ab judges."
    )
    reference_transcript: ReferenceText | None = Field(
        None, description="The ground-truth response as text, for llm-ab (instead of `reference`)."
    )

    @model_validator(mode="after")
    def _one_reference(self) -> ScoreRequest:
        if self.reference is not None and self.reference_transcript is not None:
            raise ValueError("give reference or reference_transcript, not both")
        return self


class ScoreValues(BaseModel):
    NS: float
    WA: float
    EU: float
    ES: float
    avg: float


class AudioInfo(BaseModel):
    sha256: str = Field(description="sha256 of the decoded 16 kHz mono samples: the cache key.")
    duration_s: float | None = Field(description="Always given when scoring; a stored result may lack it.")


class PairAudioInfo(BaseModel):
    query: AudioInfo
    response: AudioInfo


class ModelInfo(BaseModel):
    """The model fingerprint: everything a score depends on."""

    fingerprint: str
    backbone: str
    profile: str | None = Field(
        None, description="Which judge: empathyeval, zero-shot, zero-shot-thinking or tiny (see README)."
    )
    model_id: str = Field(description="Hub id of the checkpoint, or `local:` and its directory's name.")
    model_revision: str | None = Field(description="Hub revision (commit) when the model came from the hub.")
    weights_sha256: str | None = Field(description="Digest of the checkpoint's weights.")
    adapter_sha256: str | None = Field(description="Digest of the LoRA adapter; null without one.")
    heads_sha256: str | None = Field(description="Digest of the regression heads; null without heads.")
    prompt_version: str = Field(description="Version of the judge prompt.")
    decoding: dict[str, Any] = Field(description="Generation parameters (greedy or sampled).")
    packages: dict[str, str] = Field(description="Library versions: provenance only, not part of the key.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable identifier; see the error table in the README.")
    message: str = Field(description="What to fix, for a person.")


class ErrorResponse(BaseModel):
    """Every error answer of the API."""

    error: ErrorDetail


class ScoreResponse(BaseModel):
    """One judged pair; `error` (present only then) is a per-item outcome such as score_line_missing."""

    id: int | None = Field(
        description="The stored result (GET /v1/results/{id}); null for a per-item error that is not kept."
    )
    cached: bool = Field(description="True when the result came from the store without running the model.")
    scores: ScoreValues | None
    assessment: str | None
    model: ModelInfo
    audio: PairAudioInfo
    timings_ms: dict[str, float]
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: ErrorDetail | None = None


class TurnText(BaseModel):
    transcript: str
    emotion: dict[str, Any] | None = Field(description="The emotion label (the +emotion judges).")


class JudgeResponse(BaseModel):
    """One pair judged by an LLM judge (`judge` other than empathyeval)."""

    judge: str
    id: int | None = Field(
        description="llm-assessment: the stored result (GET /v1/results/{id}); null for llm-mos / llm-ab "
        "verdicts and for failures (never stored)."
    )
    cached: bool = Field(description="True when the verdict came from the store without an LLM call.")
    result: dict[str, Any] | None = Field(
        description="llm-mos: {score}; llm-ab: {verdict, forward, backward, flipped}; llm-assessment: "
        "{scores, text, assessment}. Null with an error."
    )
    error: ErrorDetail | None = None
    texts: dict[str, TurnText] = Field(description="What the LLM read (or, cached, would read) of each turn.")
    model: dict[str, Any] = Field(
        description="The judge fingerprint: LLM, prompt, decoding, ASR, emotion model."
    )
    audio: PairAudioInfo
    timings_ms: dict[str, float]
    metadata: dict[str, Any] = Field(default_factory=dict)


class StoredResult(BaseModel):
    """A result as stored: what `GET /v1/results/{id}` answers to the tenant that asked for it."""

    id: int
    mode: Mode
    scores: ScoreValues | None
    assessment: str | None
    model: ModelInfo
    audio: PairAudioInfo
    error: ErrorDetail | None = None


class ServiceIndex(BaseModel):
    """`GET /`: which service answers, and where its documentation is."""

    service: str = "evalsvc"
    version: str
    docs: str = Field(description="Swagger UI (served locally: works offline).")
    openapi: str = Field(description="This API's OpenAPI document.")


class HealthResponse(BaseModel):
    status: str = "alive"


class ReadyResponse(BaseModel):
    ready: bool
    model: bool = Field(description="Every model worker has loaded the model.")
    database: bool = Field(description="The database answered a query.")


class ManifestInvalidResponse(BaseModel):
    error: dict[str, Any] = Field(description="code `manifest_invalid`, message, and `problems`: every one.")


class RunResponse(BaseModel):
    """A run as `evalsvc bulk status` shows it."""

    id: int
    name: str
    mode: Mode
    judge: str = Field(description="empathyeval, or the LLM judge of the run (llm-mos, llm-ab, ...).")
    group_id: int | None = Field(
        description="The first run of the group when a manifest was submitted to several judges."
    )
    status: str = Field(description="pending, running, done or cancelled")
    items: int
    done: int
    failed: int
    pending: int
    errors: dict[str, int] = Field(description="Failed items by error code.")
    created_at: str | None
    finished_at: str | None
    queued_jobs: int | None = Field(
        None, description="Shard jobs queued by this request, for all its runs (POST only)."
    )
    runs: list[int] | None = Field(
        None,
        description="Every run this request created, one per judge in the order given; this answer is the "
        "first's (POST only).",
    )
    skipped: list[str] | None = Field(
        None, description="Manifest rows left out by skip_invalid, as LINE: PROBLEM (POST only)."
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Bad audio (audio_unreadable, audio_too_short, ...) or parameter (invalid_parameter, "
        "path_not_allowed).",
        401: "Missing or unknown API key (unauthorized).",
        413: "Body over EVALSVC_MAX_PAYLOAD_BYTES (payload_too_large) or one file over "
        "EVALSVC_AUDIO_MAX_BYTES (audio_too_large).",
        415: "Neither multipart/form-data nor application/json (unsupported_media_type).",
        422: "Fields missing or of the wrong type (validation_failed).",
        429: "More scoring requests in flight than EVALSVC_MAX_IN_FLIGHT, or than the tenant's share "
        "EVALSVC_MAX_IN_FLIGHT_PER_TENANT (overloaded); retry later.",
        503: "Model or database not ready (not_ready, database_unavailable); retry later.",
        504: "Scoring overran EVALSVC_REQUEST_TIMEOUT_S (scoring_timeout).",
    }.items()
}
"""The documented error answers of `/v1/score`, for its OpenAPI entry."""
