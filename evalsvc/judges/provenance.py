"""What a transcript or an emotion label depends on: the model that made it and how it was run.

Transcripts and labels are stored once per audio sha256 and reused by every judge, so each carries
the provenance of its model; its `key` enters the fingerprint of every LLM judge that reads them (a
new Whisper changes the transcripts, hence the judge's inputs, hence its cached results). Hashes are
the engine's (evalsvc.engine.hashing): a local checkpoint is known by its config and weights, a hub
id by the snapshot commit found in the local cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from evalsvc.engine.fingerprint import package_versions, resolve_checkpoint
from evalsvc.engine.hashing import checkpoint_weights_sha256, sha256_files
from evalsvc.engine.types import json_digest
from evalsvc.errors import ModelLoadError

_FUNASR_FILES = ("config.yaml", "model.pt", "tokens.txt")
ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class ModelProvenance:
    """A model of the judge pipeline (ASR or emotion) and the settings its outputs depend on."""

    role: str
    """'asr' or 'emotion'."""
    backend: str
    """'transformers' or 'funasr'."""
    model_id: str
    model_revision: str | None
    weights_sha256: str | None
    options: dict[str, Any]
    """Decoding (ASR: language, beams, token limit) or label mapping (emotion): part of `key`."""
    packages: dict[str, str] = field(default_factory=dict, compare=False)
    """Provenance only, not part of `key` (an upgrade does not invalidate every stored transcript)."""

    @property
    def key(self) -> str:
        return json_digest(
            {
                "role": self.role,
                "backend": self.backend,
                "model_id": self.model_id,
                "model_revision": self.model_revision,
                "weights_sha256": self.weights_sha256,
                "options": self.options,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "role": self.role,
            "backend": self.backend,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_sha256": self.weights_sha256,
            "options": dict(self.options),
            "packages": dict(self.packages),
        }


def transformers_provenance(
    role: str, model: str, revision: str | None, options: dict[str, Any]
) -> ModelProvenance:
    """Provenance of a transformers checkpoint, called after loading (a hub snapshot is cached then)."""
    model_id, resolved_revision, local_dir = resolve_checkpoint(model, revision)
    return ModelProvenance(
        role=role,
        backend="transformers",
        model_id=model_id,
        model_revision=resolved_revision,
        weights_sha256=checkpoint_weights_sha256(local_dir) if local_dir else None,
        options=options,
        packages=package_versions(),
    )


def local_config(
    role: str, model: str, source: str, revision: str | None, read: Callable[..., ConfigT]
) -> ConfigT | None:
    """`read(source, revision=...)` (a config class's `from_pretrained`: no weights loaded) for a
    checkpoint held locally, to know its provenance without loading it; None for a hub checkpoint with
    no local snapshot yet (its revision is known once loading has downloaded it)."""
    if resolve_checkpoint(source, revision)[2] is None:
        return None
    try:
        return read(source, revision=revision)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read the {role} model {model!r}: {error}") from error


def funasr_provenance(model: str, model_dir: Path | None, options: dict[str, Any]) -> ModelProvenance:
    """Provenance of a FunASR model directory (config.yaml, model.pt, tokens.txt: no config.json)."""
    path = Path(model).expanduser()
    model_id = f"local:{path.resolve().name}" if path.is_dir() else model
    files = [model_dir / name for name in _FUNASR_FILES if model_dir and (model_dir / name).is_file()]
    return ModelProvenance(
        role="emotion",
        backend="funasr",
        model_id=model_id,
        model_revision=None,
        weights_sha256=sha256_files(files) if files else None,
        options=options,
        packages=package_versions() | installed("funasr"),
    )


def installed(name: str) -> dict[str, str]:
    """{name: version} of an installed package, {} when it is not installed (an optional extra)."""
    try:
        return {name: version(name)}
    except PackageNotFoundError:
        return {}
