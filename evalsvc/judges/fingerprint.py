"""The fingerprint of an LLM judge: what its results depend on, to key the result cache.

Computed like EmpathyEval's (evalsvc.engine.types.ModelFingerprint, the same canonical-JSON sha256):
the same pair with the same fingerprint is never sent twice. It holds the LLM endpoint and model,
the prompt version and language, the decoding, and the keys of the ASR and emotion models whose
outputs fill the prompt (the emotion model only for the +emotion judges: the others never read its
labels). Package versions are provenance, not key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalsvc.engine.types import json_digest
from evalsvc.judges.judges import JudgeSpec
from evalsvc.judges.provenance import ModelProvenance, installed
from evalsvc.llm_client import LLMConfig


@dataclass(frozen=True)
class JudgeFingerprint:
    judge: str
    """The judge id ('llm-mos', 'llm-ab+emotion', ...)."""
    llm_base_url: str
    llm_model: str
    prompt_version: str
    prompt_language: str
    decoding: dict[str, Any]
    asr: ModelProvenance
    emotion: ModelProvenance | None
    packages: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return json_digest(
            {
                "judge": self.judge,
                "llm_base_url": self.llm_base_url,
                "llm_model": self.llm_model,
                "prompt_version": self.prompt_version,
                "prompt_language": self.prompt_language,
                "decoding": self.decoding,
                "asr": self.asr.key,
                "emotion": self.emotion.key if self.emotion else None,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.key,
            "judge": self.judge,
            "llm_base_url": self.llm_base_url,
            "llm_model": self.llm_model,
            "prompt_version": self.prompt_version,
            "prompt_language": self.prompt_language,
            "decoding": dict(self.decoding),
            "asr": self.asr.to_dict(),
            "emotion": self.emotion.to_dict() if self.emotion else None,
            "packages": dict(self.packages),
        }


def judge_fingerprint(
    spec: JudgeSpec, llm: LLMConfig, asr: ModelProvenance, emotion: ModelProvenance | None
) -> JudgeFingerprint:
    if spec.with_emotion and emotion is None:
        raise ValueError(f"the judge {spec.judge_id} reads emotion labels: its fingerprint needs their model")
    return JudgeFingerprint(
        judge=spec.judge_id,
        llm_base_url=llm.base_url.rstrip("/"),
        llm_model=llm.model,
        prompt_version=spec.prompt_version,
        prompt_language=spec.language,
        decoding=llm.decoding(),
        asr=asr,
        emotion=emotion if spec.with_emotion else None,
        packages=asr.packages | installed("openai"),
    )
