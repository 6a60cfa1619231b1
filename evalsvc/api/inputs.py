"""Turn one `POST /v1/score` request into a validated, decoded pair (or a user error).

Two body types carry the same request:

- `multipart/form-data`: files `query` and `response` (and `reference`), text fields `mode`,
  `metadata` (JSON), `judge` and `reference_transcript`;
- `application/json`: `ScoreRequest`, each clip as `audio_b64` or a server-side `path`.

Status codes follow one rule: 415 for a body type we do not read, 400 for a body that cannot be
parsed or a value that is wrong (bad audio, bad base64, a path outside the data roots), 422 for a
well-formed body whose fields do not match the schema (missing, wrong type, unknown field).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from evalsvc.api.responses import validation_message
from evalsvc.audio import AudioLimits, DecodedAudio, decode_audio
from evalsvc.engine.types import AudioPair
from evalsvc.errors import (
    AudioError,
    AudioTooLarge,
    InvalidParameter,
    PathNotAllowed,
    UnsupportedMediaType,
    ValidationFailed,
)
from evalsvc.protocol import MAX_METADATA_BYTES, AudioSource, JudgeName, ReferenceText, ScoreRequest
from evalsvc.settings import Mode, Settings
from evalsvc.store.models import EMPATHYEVAL_JUDGE

SIDES = ("query", "response")
_MAX_FORM_FIELD_BYTES = MAX_METADATA_BYTES + 1024


@dataclass(frozen=True)
class DataFile:
    """A vetted file under a data root, and the name messages show for it: relative to its root, so
    an answer never reveals where the server keeps its data."""

    path: Path
    shown: str


@dataclass(frozen=True)
class RawScoreRequest:
    """A parsed request before decoding: each clip as its encoded bytes or a vetted server file."""

    query: bytes | DataFile
    response: bytes | DataFile
    mode: Mode
    metadata: dict[str, Any]
    judge: str = EMPATHYEVAL_JUDGE
    reference: bytes | DataFile | str | None = None
    """The A/B reference: a clip, or its transcript (str)."""


@dataclass(frozen=True)
class ScoreInput:
    """A request ready for the model: decoded, validated audio."""

    pair: AudioPair
    mode: Mode
    metadata: dict[str, Any]
    decode_ms: float
    judge: str = EMPATHYEVAL_JUDGE
    reference: DecodedAudio | str | None = None


class _FormFields(BaseModel):
    """The text fields of a multipart request, validated like the JSON body's."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "scores"
    metadata: dict[str, Any] = Field(default_factory=dict)
    judge: JudgeName = EMPATHYEVAL_JUDGE
    reference_transcript: ReferenceText | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except (ValueError, RecursionError) as error:
                raise ValueError(f"metadata must be a JSON object ({error})") from None
        return value


async def read_score_request(request: Request, settings: Settings) -> RawScoreRequest:
    """Read and vet the body (decoding is `decode_raw_request`, once the request holds an in-flight
    slot); raises a `UserInputError` subclass for anything the caller must fix."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        raw = await _read_multipart(request, settings)
    elif media_type == "application/json":
        raw = _from_json_body(await request.body(), settings)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media_type or '(none)'!r}; send multipart/form-data "
            "(files query and response) or application/json"
        )
    return raw


def decode_raw_request(raw: RawScoreRequest, limits: AudioLimits) -> ScoreInput:
    """Decode both clips (CPU-bound: runs in a worker thread); errors name the side at fault."""
    started = perf_counter()
    query, response = _decode("query", raw.query, limits), _decode("response", raw.response, limits)
    reference = raw.reference
    if isinstance(reference, bytes | DataFile):
        reference = _decode("reference", reference, limits)
    return ScoreInput(
        AudioPair(query, response),
        raw.mode,
        raw.metadata,
        (perf_counter() - started) * 1e3,
        raw.judge,
        reference,
    )


def _decode(side: str, source: bytes | DataFile, limits: AudioLimits) -> DecodedAudio:
    try:
        if isinstance(source, DataFile):
            return decode_audio(source.path, limits, name=source.shown)
        return decode_audio(source, limits)
    except AudioError as error:
        raise type(error)(f"{side}: {error.message}") from error


def _from_json_body(body: bytes, settings: Settings) -> RawScoreRequest:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidParameter(f"the body is not valid JSON: {error}") from None
    try:
        parsed = ScoreRequest.model_validate(document)
    except ValidationError as error:
        raise ValidationFailed(validation_message(error.errors())) from None
    _check_metadata_size(parsed.metadata)
    limits = AudioLimits.from_settings(settings)
    reference: bytes | DataFile | str | None = parsed.reference_transcript
    if parsed.reference is not None:
        reference = _json_source("reference", parsed.reference, settings.data_roots, limits)
    return RawScoreRequest(
        query=_json_source("query", parsed.query, settings.data_roots, limits),
        response=_json_source("response", parsed.response, settings.data_roots, limits),
        mode=parsed.mode,
        metadata=parsed.metadata,
        judge=parsed.judge,
        reference=reference,
    )


def _json_source(side: str, source: AudioSource, roots: list[Path], limits: AudioLimits) -> bytes | DataFile:
    if source.path is not None:
        return resolve_data_path(side, source.path, roots)
    assert source.audio_b64 is not None
    encoded = source.audio_b64
    if len(encoded) // 4 * 3 > limits.max_bytes + 3:
        raise AudioTooLarge(
            f"{side}: the clip is over {limits.max_bytes / 2**20:.1f} MiB (EVALSVC_AUDIO_MAX_BYTES)"
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{side}.audio_b64 is not valid base64") from None


async def _read_multipart(request: Request, settings: Settings) -> RawScoreRequest:
    try:
        async with request.form(max_files=3, max_fields=8, max_part_size=_MAX_FORM_FIELD_BYTES) as form:
            files: dict[str, bytes] = {}
            fields: dict[str, str] = {}
            for name, value in form.multi_items():
                if name in files or name in fields:
                    raise ValidationFailed(f"{name}: given more than once")
                if name in (*SIDES, "reference"):
                    if not isinstance(value, UploadFile):
                        raise ValidationFailed(f"{name}: must be a file part (with a filename)")
                    files[name] = await value.read()
                elif isinstance(value, UploadFile):
                    raise ValidationFailed(
                        f"{name}: unexpected file; the files are query, response and reference"
                    )
                else:
                    fields[name] = value
    except (MultiPartException, StarletteHTTPException) as error:
        detail = getattr(error, "message", None) or getattr(error, "detail", "")
        raise InvalidParameter(f"malformed multipart body: {detail}") from None
    missing = [side for side in SIDES if side not in files]
    if missing:
        raise ValidationFailed("; ".join(f"{side}: file required" for side in missing))
    form_fields = _validate_form_fields(fields)
    limit = settings.audio_max_bytes
    for side, data in files.items():
        if len(data) > limit:
            raise AudioTooLarge(f"{side}: the clip is over {limit / 2**20:.1f} MiB (EVALSVC_AUDIO_MAX_BYTES)")
    if "reference" in files and form_fields.reference_transcript is not None:
        raise ValidationFailed("give reference or reference_transcript, not both")
    return RawScoreRequest(
        files["query"],
        files["response"],
        form_fields.mode,
        form_fields.metadata,
        form_fields.judge,
        files.get("reference", form_fields.reference_transcript),
    )


def _validate_form_fields(fields: Mapping[str, str]) -> _FormFields:
    try:
        parsed = _FormFields.model_validate(dict(fields))
    except ValidationError as error:
        raise ValidationFailed(validation_message(error.errors())) from None
    _check_metadata_size(parsed.metadata)
    return parsed


def _check_metadata_size(metadata: dict[str, Any]) -> None:
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValidationFailed(f"metadata: larger than {MAX_METADATA_BYTES // 1024} KiB")


def resolve_data_path(side: str, raw: str, roots: list[Path]) -> DataFile:
    """A server-side path, accepted only inside a data root after resolving symlinks and `..`.

    Relative paths are taken relative to each root in turn. The check is on the resolved path, so a
    symlink inside a root that points outside it is refused like `../../etc/passwd` is.
    """
    if not roots:
        raise PathNotAllowed(f"{side}.path: server-side paths are turned off (set EVALSVC_DATA_ROOTS)")
    for root in roots:
        try:
            resolved_root = root.resolve(strict=True)
            candidate = (resolved_root / raw).resolve(strict=False)
        except (OSError, ValueError, RuntimeError):  # NUL bytes, names too long, symlink loops
            continue
        if candidate.is_relative_to(resolved_root):
            return DataFile(candidate, str(candidate.relative_to(resolved_root)))
    raise PathNotAllowed(f"{side}.path: not under a configured data root")
