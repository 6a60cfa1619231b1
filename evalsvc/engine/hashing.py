"""Content hashes of model artefacts, the raw material of fingerprints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over several files, each prefixed by its name so renames change the digest.

    JSON files are hashed by meaning (keys and string lists sorted): peft writes the adapter's
    target modules from a set, in an order that changes between runs of the same build.
    """
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".json":
            digest.update(_canonical_json(path))
            continue
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def sha256_directory(directory: Path) -> str:
    """Digest of the config and weight files directly in `directory` (an adapter folder)."""
    return sha256_files(
        path for path in directory.iterdir() if path.is_file() and path.suffix in (".json", *_WEIGHT_SUFFIXES)
    )


def _canonical_json(path: Path) -> bytes:
    def normalise(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: normalise(item) for key, item in value.items()}
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return sorted(value)
        if isinstance(value, list):
            return [normalise(item) for item in value]
        return value

    return json.dumps(normalise(json.loads(path.read_text())), sort_keys=True).encode()


HEADS_WEIGHTS_FILE = "heads.safetensors"
HEADS_CONFIG_FILE = "heads.json"


def heads_sha256(directory: Path) -> str:
    """Digest of the two files that define fitted heads (not of metrics or notes beside them)."""
    return sha256_files([directory / HEADS_CONFIG_FILE, directory / HEADS_WEIGHTS_FILE])


def checkpoint_weights_sha256(directory: Path) -> str | None:
    """Identify a local checkpoint by its config plus its weights index, or its weights without one.

    Sharded checkpoints (every large hub checkpoint) carry an index listing each tensor and the total
    size; hashing it instead of tens of GB of shards keeps start-up fast.
    """
    config = directory / "config.json"
    indexes = sorted(directory.glob("*.index.json"))
    weights = sorted(p for p in directory.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not config.is_file() or not (indexes or weights):
        return None
    if indexes:
        return sha256_files([config, *indexes])
    return sha256_files([config, *weights])
