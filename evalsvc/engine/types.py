"""Value types the engine hands to every caller (CLI, HTTP tier, bulk workers, store).

They are plain frozen dataclasses so that they cross process boundaries (pickle, JSON) unchanged and
carry no torch state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from evalsvc.audio import DecodedAudio
from evalsvc.errors import ItemError
from evalsvc.settings import Mode

DIMENSIONS: tuple[str, ...] = ("NS", "WA", "EU", "ES")
SCORE_MIN = 1.0
SCORE_MAX = 5.0
MODES: tuple[Mode, ...] = ("scores", "assessment", "both")


@dataclass(frozen=True)
class Scores:
    """The four EmpathyEval dimensions on the 1-5 scale; `avg` is the paper's headline metric."""

    NS: float
    WA: float
    EU: float
    ES: float

    @property
    def avg(self) -> float:
        return (self.NS + self.WA + self.EU + self.ES) / 4.0

    def to_dict(self) -> dict[str, float]:
        return {"NS": self.NS, "WA": self.WA, "EU": self.EU, "ES": self.ES, "avg": self.avg}

    @classmethod
    def from_values(cls, values: list[float] | tuple[float, ...]) -> Scores:
        return cls(*(float(v) for v in values))


@dataclass(frozen=True)
class GenerationBackend:
    """A generation server that writes the assessment text (evalsvc.engine.served): its kernels,
    batching and checkpoint file are not the in-process ones, so its texts are kept apart."""

    url: str
    served_model: str
    manifest_sha256: str | None
    """The merged checkpoint's manifest (evalsvc.engine.merge_manifest); None for a checkpoint
    served as published (a zero-shot judge needs no merge)."""

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "served_model": self.served_model, "manifest_sha256": self.manifest_sha256}


@dataclass(frozen=True)
class Decoding:
    """Generation parameters; part of the fingerprint because they change the assessment text.

    `backend`, when text comes from a generation server, is part of it for the same reason; it is
    not part of the backbone, so heads are unaffected.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    backend: GenerationBackend | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        served = {"backend": self.backend.to_dict()} if self.backend else {}
        if self.greedy:
            return {"max_new_tokens": self.max_new_tokens, "greedy": True} | served
        return {
            "max_new_tokens": self.max_new_tokens,
            "greedy": False,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        } | served


@dataclass(frozen=True)
class ModelFingerprint:
    """Everything a score depends on; `key` identifies it in the result cache.

    `backbone` is the part heads are fitted on (weights, adapter, prompt): heads fitted on one backbone
    are meaningless on another. Package versions are provenance only; they are not part of `key`, so
    a library upgrade does not silently invalidate every cached score. `profile` (evalsvc.engine.
    profiles) says which judge this is and is part of `key`: the Thinking profile's assessments are
    read differently (its reasoning is removed).
    """

    model_id: str
    model_revision: str | None
    weights_sha256: str | None
    adapter_sha256: str | None
    heads_sha256: str | None
    prompt_version: str
    decoding: Decoding
    packages: dict[str, str] = field(default_factory=dict, compare=False)
    profile: str | None = None

    @property
    def backbone(self) -> str:
        return json_digest(
            {
                "model_id": self.model_id,
                "model_revision": self.model_revision,
                "weights_sha256": self.weights_sha256,
                "adapter_sha256": self.adapter_sha256,
                "prompt_version": self.prompt_version,
            }
        )

    @property
    def key(self) -> str:
        return json_digest(
            {
                "backbone": self.backbone,
                "heads_sha256": self.heads_sha256,
                "decoding": self.decoding.to_dict(),
                "profile": self.profile,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.key,
            "backbone": self.backbone,
            "profile": self.profile,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_sha256": self.weights_sha256,
            "adapter_sha256": self.adapter_sha256,
            "heads_sha256": self.heads_sha256,
            "prompt_version": self.prompt_version,
            "decoding": self.decoding.to_dict(),
            "packages": dict(self.packages),
        }


@dataclass(frozen=True)
class PairResult:
    """The outcome for one (query, response) pair: scores and/or assessment, or a per-item error."""

    scores: Scores | None
    assessment: str | None
    error: ItemError | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def json_digest(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `payload` (sorted keys, no spaces): the fingerprints' keys."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AudioPair:
    """A spoken user query and the spoken system response being judged."""

    query: DecodedAudio
    response: DecodedAudio
