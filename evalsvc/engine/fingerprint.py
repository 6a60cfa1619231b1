"""Derive the model fingerprint from the artefacts actually loaded."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from evalsvc.engine.hashing import checkpoint_weights_sha256, heads_sha256, sha256_directory
from evalsvc.engine.merge_manifest import verified_manifest
from evalsvc.engine.prompt import PROMPT_VERSION
from evalsvc.engine.types import Decoding, ModelFingerprint

_PROVENANCE_PACKAGES = ("evalsvc", "torch", "transformers", "peft", "tokenizers", "soxr", "soundfile")


def resolve_checkpoint(model: str, revision: str | None) -> tuple[str, str | None, Path | None]:
    """(model id, revision, local directory) for a local path or a hub id.

    A local directory is identified by its name plus the hash of its weights, not by its full path,
    so the same checkpoint mounted at different places (API and workers) shares cached results. A hub
    id is pinned to the commit of the snapshot found in the local cache when there is one.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return f"local:{path.resolve().name}", None, path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json", revision=revision)
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        return model, snapshot.name, snapshot
    return model, revision, None


def build_fingerprint(
    model: str,
    revision: str | None,
    adapter: Path | None,
    heads: Path | None,
    decoding: Decoding,
    profile: str | None = None,
) -> ModelFingerprint:
    model_id, resolved_revision, local_dir = resolve_checkpoint(model, revision)
    weights_sha256 = checkpoint_weights_sha256(local_dir) if local_dir else None
    adapter_sha256 = sha256_directory(adapter) if adapter else None
    merged = verified_manifest(local_dir) if local_dir else None
    if merged is not None:
        # The judge it was merged from (evalsvc.engine.merge_manifest): same backbone, same cache.
        model_id, resolved_revision = merged.base_model_id, merged.base_revision
        weights_sha256, adapter_sha256 = merged.base_weights_sha256, merged.adapter_sha256
    return ModelFingerprint(
        model_id=model_id,
        model_revision=resolved_revision,
        weights_sha256=weights_sha256,
        adapter_sha256=adapter_sha256,
        heads_sha256=heads_sha256(heads) if heads else None,
        prompt_version=PROMPT_VERSION,
        decoding=decoding,
        packages=package_versions(),
        profile=profile,
    )


def package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
