"""Fixtures of the generation-server tests: the tiny judge merged and exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsvc.engine.merge_export import export_merged
from evalsvc.engine.merge_manifest import MergeManifest
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings

# Small enough that the tiny model (about 0.6 MB) is written as several shards, as a real one is.
SHARD_BYTES = 200_000


@pytest.fixture(scope="session")
def merged_tiny(
    tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, MergeManifest]:
    out = tmp_path_factory.mktemp("merged") / "tiny-merged"
    return out, export_merged(tiny_settings, out, max_shard_bytes=SHARD_BYTES)


@pytest.fixture(scope="session")
def merged_settings(
    merged_tiny: tuple[Path, MergeManifest], tiny_settings: Settings, tiny_paths: TinyModelPaths
) -> Settings:
    """The merged checkpoint as the model, no adapter, the tiny heads."""
    return tiny_settings.model_copy(
        update={"model": str(merged_tiny[0]), "adapter": None, "heads": tiny_paths.heads}
    )
