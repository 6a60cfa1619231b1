"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evalsvc.audio import DecodedAudio
from evalsvc.engine.types import AudioPair

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


def running_in_ci() -> bool:
    """In CI a missing service is a failure, not a reason to skip."""
    return os.environ.get("CI", "").lower() == "true"


def tone(seconds: float, frequency: float, amplitude: float = 0.1) -> DecodedAudio:
    """A synthetic clip; distinct frequencies and lengths give distinct pairs."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    samples = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return DecodedAudio(samples=samples, duration_s=seconds, sha256=f"tone-{seconds}-{frequency}-{amplitude}")


def tone_pair(query_seconds: float, response_seconds: float, frequency: float = 220.0) -> AudioPair:
    return AudioPair(tone(query_seconds, frequency), tone(response_seconds, frequency * 1.5))
