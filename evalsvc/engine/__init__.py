"""EmpathyEval inference: Qwen3-Omni thinker (+ LoRA) with NS/WA/EU/ES heads."""

from evalsvc.engine.engine import Engine
from evalsvc.engine.types import AudioPair, Decoding, ModelFingerprint, PairResult, Scores

__all__ = ["AudioPair", "Decoding", "Engine", "ModelFingerprint", "PairResult", "Scores"]
