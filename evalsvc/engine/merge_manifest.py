"""The manifest of a merged checkpoint (`evalsvc export merged`): what it was merged from.

A checkpoint with the EmpathyEval LoRA merged into its weights computes what the base model with the
adapter computes, so evalsvc identifies it as that judge: its fingerprint takes the base's id,
revision and weights hash and the adapter's hash from the manifest, which gives the same backbone
(heads fitted on base + adapter load on it) and the same cache key as the unmerged judge. In-process
loading already merges the adapter by default (`merge_adapter`), so both are the same computation.

The manifest also records the merged files' own weights hash: a checkpoint edited after its export
no longer matches and is refused rather than trusted under its base's name.

Kept free of torch: fingerprints are computed from files on the cache path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalsvc.engine.hashing import checkpoint_weights_sha256
from evalsvc.errors import ModelLoadError

MANIFEST_FILE = "evalsvc-merged.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class MergeManifest:
    base_model_id: str
    base_revision: str | None
    base_weights_sha256: str | None
    adapter_sha256: str
    prompt_version: str
    profile: str
    merged_weights_sha256: str | None
    """`checkpoint_weights_sha256` of the exported files (config plus weights index)."""
    dtype: str
    evalsvc_version: str
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @property
    def sha256(self) -> str:
        """What a fingerprint records of the merged checkpoint a generation server serves."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def read(cls, directory: Path) -> MergeManifest | None:
        """The manifest in `directory`, or None when it is not a merged export."""
        path = directory / MANIFEST_FILE
        if not path.is_file():
            return None
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            manifest = cls(**raw)
        except (OSError, ValueError, TypeError) as error:
            raise ModelLoadError(f"{path} is not a valid merged-checkpoint manifest: {error}") from error
        if manifest.format != MANIFEST_FORMAT:
            raise ModelLoadError(
                f"{path} has manifest format {manifest.format}; this evalsvc reads {MANIFEST_FORMAT}"
            )
        return manifest


def verified_manifest(directory: Path) -> MergeManifest | None:
    """The manifest of a merged checkpoint whose weights are still the exported ones; None when
    `directory` is not a merged export."""
    manifest = MergeManifest.read(directory)
    if manifest is None:
        return None
    if checkpoint_weights_sha256(directory) != manifest.merged_weights_sha256:
        raise ModelLoadError(
            f"the weights in {directory} are not the ones its {MANIFEST_FILE} was written for (changed "
            "after `evalsvc export merged`?); export the merged checkpoint again"
        )
    return manifest
