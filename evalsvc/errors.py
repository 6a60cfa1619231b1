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
    │   └── InvalidParameter               invalid_parameter       400
    └── ConfigurationError                 the service's own setup (model, adapter, heads) is wrong
        ├── ModelLoadError                 model_load_failed       503
        └── HeadsMismatchError             heads_fingerprint_mismatch 503

Per-item scoring outcomes that are not exceptions (a generated answer without a valid score line)
are reported as `ItemError` values with the codes in `SCORE_PARSE_CODES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class EvalsvcError(Exception):
    """Base of all expected errors; `code` is the stable identifier clients rely on."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
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


class ConfigurationError(EvalsvcError):
    code = "configuration_error"
    http_status = 503


class ModelLoadError(ConfigurationError):
    code = "model_load_failed"


class HeadsMismatchError(ConfigurationError):
    code = "heads_fingerprint_mismatch"


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
