"""Which files a configuration scores with, and their fingerprint, without loading torch.

Kept free of torch and transformers so that the cache path (CLI, HTTP front end) can key results by
fingerprint in milliseconds; only a cache miss pays for importing and loading the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.merge_manifest import MANIFEST_FILE
from evalsvc.engine.profiles import ModelProfile, resolve_profile
from evalsvc.engine.tiny_layout import TinyModelPaths
from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.errors import ModelLoadError
from evalsvc.settings import Settings


@dataclass(frozen=True)
class ModelArtifacts:
    model: str
    revision: str | None
    adapter: Path | None
    heads: Path | None
    profile: ModelProfile


def resolve_artifacts(settings: Settings) -> ModelArtifacts:
    """Where the model, adapter and heads come from, and which judge they make; `tiny` is built on
    first use. The Captioner without an adapter is refused here (`ModelNotAJudge`), before any cache
    lookup or load."""
    if settings.uses_tiny_model:
        tiny = TinyModelPaths(settings.tiny_model_dir)
        if not tiny.complete():
            from evalsvc.engine.tiny import ensure_tiny_model  # torch: only when it must be built

            tiny = ensure_tiny_model(settings.tiny_model_dir, settings.tiny_seed)
        model, revision = str(tiny.model), None
        # Its heads were fitted on its own adapter: with another adapter they cannot apply.
        adapter = settings.adapter or tiny.adapter
        heads = settings.heads or (tiny.heads if settings.adapter is None else None)
    else:
        model, revision, adapter, heads = (
            settings.model,
            settings.model_revision,
            settings.adapter,
            settings.heads,
        )
    if _looks_like_local_path(model) and not Path(model).expanduser().is_dir():
        raise ModelLoadError(f"model directory {model} does not exist")
    if adapter is not None and (Path(model).expanduser() / MANIFEST_FILE).is_file():
        raise ModelLoadError(
            f"{model} is a merged checkpoint: its adapter is already in its weights; load it without "
            "--adapter (EVALSVC_ADAPTER)"
        )
    profile = resolve_profile(settings.model_profile, model, has_adapter=adapter is not None)
    return ModelArtifacts(model, revision, adapter, heads, profile)


def decoding_from_settings(settings: Settings, profile: ModelProfile) -> Decoding:
    return Decoding(
        max_new_tokens=settings.max_new_tokens or profile.default_max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )


def configured_fingerprint(settings: Settings) -> ModelFingerprint:
    """The fingerprint `Engine.load(settings)` will have, computed from the artefact files alone."""
    return fingerprint_of(resolve_artifacts(settings), settings)


def fingerprint_of(artifacts: ModelArtifacts, settings: Settings) -> ModelFingerprint:
    return build_fingerprint(
        artifacts.model,
        artifacts.revision,
        artifacts.adapter,
        artifacts.heads,
        decoding_from_settings(settings, artifacts.profile),
        artifacts.profile.name,
    )


def _looks_like_local_path(model: str) -> bool:
    """A hub id is `name` or `org/name`; anything else was meant as a directory on this machine."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1
