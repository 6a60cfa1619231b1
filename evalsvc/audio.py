"""Decoding user audio into the 16 kHz mono float32 clips the model hears.

INTERFACE STUB: being implemented (decode_audio, audio_from_array).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalsvc.settings import Settings

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioLimits:
    min_seconds: float = 0.1
    max_seconds: float = 30.0
    max_bytes: int = 25 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> AudioLimits:
        return cls(settings.audio_min_seconds, settings.audio_max_seconds, settings.audio_max_bytes)


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE, read-only
    duration_s: float
    sha256: str


def decode_audio(source: bytes | str | Path, limits: AudioLimits) -> DecodedAudio:
    raise NotImplementedError


def audio_from_array(samples: np.ndarray, sample_rate: int, limits: AudioLimits) -> DecodedAudio:
    raise NotImplementedError
