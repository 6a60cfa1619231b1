"""Every error a user can cause, with its stable code and HTTP status.

Callers (CLI, HTTP, workers) never parse messages: they read `code` (stable, documented in the
README) and `http_status`. Anything that is not an `EvalsvcError` is a bug in evalsvc.

    EvalsvcError
    ├── UserInputError                     4xx: the request or file must be fixed by the user
    │   ├── AudioError
    │   │   ├── AudioUnreadable            audio_unreadable        400
    │   │   ├── AudioEmpty                 audio_empty             400
    │   │   ├── AudioTooShort              audio_too_short         400
    │   │   ├── AudioTooLong               audio_too_long          400
    │   │   ├── AudioNotFinite             audio_not_finite        400
    │   │   └── AudioTooLarge              audio_too_large         413
    │   ├── InvalidParameter               invalid_parameter       400
    │   │   └── PathNotAllowed             path_not_allowed        400
    │   ├── Unauthorized                   unauthorized            401
    │   ├── NotFound                       not_found               404
    │   ├── RequestTimeout                 request_timeout         408 (headers or body sent too slowly)
    │   ├── PayloadTooLarge                payload_too_large       413
    │   ├── UnsupportedMediaType           unsupported_media_type  415
    │   ├── ValidationFailed               validation_failed       422
    │   ├── ManifestInvalid                manifest_invalid        422 (every bad line, with its number)
    │   │   ├── LabelsInvalid              labels_invalid          422 (a human-labels file, likewise)
    │   │   ├── TextsInvalid               texts_invalid           422 (a `build --texts` file, likewise)
    │   │   ├── ReferencesInvalid          references_invalid      422 (a `report text-agreement` references file)
    │   │   └── TrainingDataInvalid        training_data_invalid   422 (a `train adapter` data file, likewise)
    │   ├── NothingToBuild                 nothing_to_build        422 (a training set would have no rows)
    │   ├── ResumeMismatch                 resume_mismatch         409 (`train adapter --resume` with other data or settings)
    │   └── LLMBudgetExceeded              llm_budget_exceeded     402 (the next LLM batch could pass `--max-cost`)
    ├── ServiceBusy                        the service cannot answer now; the same request may succeed later
    │   ├── Overloaded                     overloaded              429
    │   ├── NotReady                       not_ready               503
    │   ├── ScoringTimeout                 scoring_timeout         504
    │   ├── QueueUnavailable               queue_unavailable       503 (Redis of the bulk queue)
    │   ├── LLMUnreachable                 llm_unreachable         502 (the judge LLM's API: no connection)
    │   ├── LLMServerError                 llm_server_error        502 (it kept answering 5xx)
    │   ├── LLMRateLimited                 llm_rate_limited        429 (it kept answering 429)
    │   └── LLMTimeout                     llm_timeout             504 (no answer within the time limit)
    ├── ConfigurationError                 the service's own setup (model, adapter, heads) is wrong
    │   ├── ModelLoadError                 model_load_failed       503
    │   ├── ModelNotAJudge                 model_not_a_judge       503 (the Captioner without its adapter)
    │   ├── HeadsMismatchError             heads_fingerprint_mismatch 503
    │   ├── RunNotInDatabase               run_not_in_database     503 (a worker on another database)
    │   ├── EmotionLabelsUnmapped          emotion_labels_unmapped 503 (a classifier's labels, not the seven)
    │   ├── LLMAuthFailed                  llm_auth_failed         503 (the LLM API refused the key)
    │   └── LLMModelUnavailable            llm_model_unavailable   503 (unknown or refused model)
    ├── StoreError                         the SQL store cannot serve the request
    │   ├── StoreUnavailable               database_unavailable    503
    │   └── StoreSchemaOutdated            database_schema_outdated 503
    └── LLMReplyError                      one judge call got an answer that cannot be used (per item)
        ├── LLMRefused                     llm_refused             422 (the model declined to judge)
        ├── LLMRequestRejected             llm_request_rejected    502 (the API refused this one request)
        └── LLMReplyUnreadable             llm_reply_unreadable    502 (not the requested format)
            └── LLMReplyEchoesTemplate     llm_reply_echoes_template 502 (the prompt's own format came back)

Per-item scoring outcomes that are not exceptions (a generated answer without a valid score line)
are reported as `ItemError` values with the codes in `SCORE_PARSE_CODES`. The LLM judges
(evalsvc.judges) report the `LLMReplyError` codes and the transient `LLM_TRANSIENT_CODES` per item
the same way: `LLM_ITEM_CODES` is both sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class EvalsvcError(Exception):
    """Base of all expected errors; `code` is the stable identifier clients rely on."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class UserInputError(EvalsvcError):
    http_status = 400


class AudioError(UserInputError):
    code = "audio_error"


class AudioUnreadable(AudioError):
    code = "audio_unreadable"


class AudioEmpty(AudioError):
    code = "audio_empty"


class AudioTooShort(AudioError):
    code = "audio_too_short"


class AudioTooLong(AudioError):
    code = "audio_too_long"


class AudioNotFinite(AudioError):
    code = "audio_not_finite"


class AudioTooLarge(AudioError):
    code = "audio_too_large"
    http_status = 413


class InvalidParameter(UserInputError):
    code = "invalid_parameter"


class PathNotAllowed(InvalidParameter):
    """A server-side `path` outside the configured data roots, or `path` inputs are turned off."""

    code = "path_not_allowed"


class Unauthorized(UserInputError):
    code = "unauthorized"
    http_status = 401


class NotFound(UserInputError):
    """Also what another tenant's result looks like: its existence is not revealed."""

    code = "not_found"
    http_status = 404


class RequestTimeout(UserInputError):
    """The client sent its request too slowly; the connection is closed with the answer."""

    code = "request_timeout"
    http_status = 408


class PayloadTooLarge(UserInputError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(UserInputError):
    code = "unsupported_media_type"
    http_status = 415


class ValidationFailed(UserInputError):
    """The request is well-formed but its fields do not match the schema (missing, wrong type)."""

    code = "validation_failed"
    http_status = 422


class ManifestInvalid(UserInputError):
    """A bulk manifest with problems; all of them are listed, each with its line, so one fix suffices."""

    code = "manifest_invalid"
    http_status = 422

    def __init__(self, message: str, problems: Sequence[tuple[int, str]]) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {
            "problems": [{"line": line, "message": problem} for line, problem in self.problems]
        }


class LabelsInvalid(ManifestInvalid):
    """A human-labels file (`evalsvc labels import`) with problems, every one with its line."""

    code = "labels_invalid"


class TextsInvalid(ManifestInvalid):
    """A transcripts/speech-tokens side file (`evalsvc build --texts`) with problems, each with its line."""

    code = "texts_invalid"


class ReferencesInvalid(ManifestInvalid):
    """A references file of `report text-agreement` with problems, every one with its line."""

    code = "references_invalid"


class TrainingDataInvalid(ManifestInvalid):
    """A `train adapter` data file with problems, every one with its line; nothing is trained.

    `located` keeps the file of each problem, since one command may read several data files;
    `summary` counts them without listing them (what a command prints after the list)."""

    code = "training_data_invalid"

    def __init__(self, message: str, located: Sequence[tuple[str, int, str]], summary: str = "") -> None:
        super().__init__(message, [(line, problem) for _, line, problem in located])
        self.located = list(located)
        self.summary = summary or message

    def to_dict(self) -> dict[str, Any]:
        return EvalsvcError.to_dict(self) | {
            "problems": [
                {"file": file, "line": line, "message": problem} for file, line, problem in self.located
            ]
        }


class NothingToBuild(UserInputError):
    """A training-data build that would write no row: nothing is written or registered, and the message
    says, per reason the items were left out, what to supply instead."""

    code = "nothing_to_build"
    http_status = 422


class ResumeMismatch(UserInputError):
    """`train adapter --resume` whose data, stages or settings differ from the interrupted training's:
    continuing would give an adapter that neither of the two commands describes."""

    code = "resume_mismatch"
    http_status = 409


class LLMBudgetExceeded(UserInputError):
    """The next batch of LLM calls could take a run past its `--max-cost`: the run stops before it
    spends more; raise the budget and resume it."""

    code = "llm_budget_exceeded"
    http_status = 402


class ServiceBusy(EvalsvcError):
    """Transient: clients retry these (with backoff) rather than change the request."""

    code = "service_busy"
    http_status = 503


class Overloaded(ServiceBusy):
    code = "overloaded"
    http_status = 429


class NotReady(ServiceBusy):
    code = "not_ready"


class ScoringTimeout(ServiceBusy):
    code = "scoring_timeout"
    http_status = 504


class QueueUnavailable(ServiceBusy):
    """Redis (the bulk queue) cannot be reached; a recorded run can be queued later with `bulk resume`."""

    code = "queue_unavailable"


class ConfigurationError(EvalsvcError):
    code = "configuration_error"
    http_status = 503


class ModelLoadError(ConfigurationError):
    code = "model_load_failed"


class ModelNotAJudge(ConfigurationError):
    """The configured checkpoint cannot follow the judge prompt (the Captioner without EmpathyEval)."""

    code = "model_not_a_judge"


class HeadsMismatchError(ConfigurationError):
    code = "heads_fingerprint_mismatch"


class RunNotInDatabase(ConfigurationError):
    """A bulk worker got a job of a run its database does not hold: it uses another database than
    the one the run was submitted to. Retrying cannot help, so the job fails at once."""

    code = "run_not_in_database"


class EmotionLabelsUnmapped(ConfigurationError):
    """An emotion classifier whose label names do not map onto the paper's seven emotions: its
    labels would be thrown away, so it is refused at load, naming the labels and the setting that maps
    them (EVALSVC_EMOTION_LABEL_MAP)."""

    code = "emotion_labels_unmapped"


class LLMUnreachable(ServiceBusy):
    """No connection to the judge LLM's API (wrong base URL, server down, DNS): every call of the run
    would fail alike, so it stops the batch rather than failing each item."""

    code = "llm_unreachable"
    http_status = 502


class LLMServerError(ServiceBusy):
    """The judge LLM's API answered 5xx on every retry."""

    code = "llm_server_error"
    http_status = 502


class LLMRateLimited(ServiceBusy):
    """The judge LLM's API answered 429 on every retry: lower EVALSVC_LLM_CONCURRENCY or wait."""

    code = "llm_rate_limited"
    http_status = 429


class LLMTimeout(ServiceBusy):
    """The judge LLM's API did not answer within EVALSVC_LLM_TIMEOUT_S, on every retry."""

    code = "llm_timeout"
    http_status = 504


class LLMAuthFailed(ConfigurationError):
    """The judge LLM's API refused the key (401): EVALSVC_LLM_API_KEY is missing or wrong."""

    code = "llm_auth_failed"


class LLMModelUnavailable(ConfigurationError):
    """The judge LLM's API does not serve EVALSVC_LLM_MODEL (unknown, or not allowed for this key)."""

    code = "llm_model_unavailable"


class StoreError(EvalsvcError):
    code = "database_error"
    http_status = 503


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened (wrong URL, server down, locked file)."""

    code = "database_unavailable"


class StoreSchemaOutdated(StoreError):
    """The database schema is not the revision this code expects: run `evalsvc db upgrade`."""

    code = "database_schema_outdated"


class LLMReplyError(EvalsvcError):
    """One judge call was answered, but the answer cannot be used; the item gets no score (never a
    guessed one) and the run goes on. Not cached: running the item again asks again."""

    code = "llm_reply_error"
    http_status = 502


class LLMRefused(LLMReplyError):
    """The model declined to judge (an OpenAI `refusal`, or the `content_filter` finish reason)."""

    code = "llm_refused"
    http_status = 422


class LLMRequestRejected(LLMReplyError):
    """The API refused this one request (400), e.g. a transcript beyond the model's context."""

    code = "llm_request_rejected"


class LLMReplyUnreadable(LLMReplyError):
    """The reply is not the JSON object (or bare integer) the prompt asks for."""

    code = "llm_reply_unreadable"


class LLMReplyEchoesTemplate(LLMReplyUnreadable):
    """The reply repeats the prompt's own answer format or instructions (prometheus-eval #58: a parser
    that searched the whole text read the template's example score as the verdict)."""

    code = "llm_reply_echoes_template"


SCORE_LINE_MISSING = "score_line_missing"
SCORE_LINE_MALFORMED = "score_line_malformed"
SCORE_OUT_OF_RANGE = "score_out_of_range"
SCORE_PARSE_CODES = frozenset({SCORE_LINE_MISSING, SCORE_LINE_MALFORMED, SCORE_OUT_OF_RANGE})


@dataclass(frozen=True)
class ItemError:
    """An error attached to one scored item rather than raised, so a batch keeps its other items."""

    code: str
    message: str

    @classmethod
    def from_exception(cls, error: EvalsvcError) -> ItemError:
        return cls(code=error.code, message=error.message)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# Per-item LLM outcomes: transient ones may succeed when the item is run again later.
LLM_TRANSIENT_CODES = frozenset({LLMServerError.code, LLMRateLimited.code, LLMTimeout.code})
LLM_REPLY_CODES = frozenset(
    {LLMRefused.code, LLMRequestRejected.code, LLMReplyUnreadable.code, LLMReplyEchoesTemplate.code}
)
LLM_ITEM_CODES = LLM_TRANSIENT_CODES | LLM_REPLY_CODES
