"""Shared fixtures: an isolated environment and one tiny model per test session.

EVALSVC_* variables of the developer's shell are removed so that every test sees only the settings it
constructs; the tiny model (a few seconds to build) is built once and shared read-only.

PostgreSQL is found at TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432, database `test`, used
only to create and drop scratch databases: `evalsvc.store.scratch`). When it is unreachable the tests
that need it are skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from evalsvc.engine.engine import Engine
from evalsvc.engine.merge_export import export_merged
from evalsvc.engine.merge_manifest import MergeManifest
from evalsvc.engine.tiny import TinyModelPaths, build_tiny_model
from evalsvc.settings import Settings
from tests.helpers import running_in_ci

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

for _name in [name for name in os.environ if name.startswith("EVALSVC_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "seed0", seed=0)


@pytest.fixture(scope="session")
def tiny_settings(tiny_paths: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the tiny model by explicit paths (the same code path as a real checkpoint)."""
    return Settings(
        model=str(tiny_paths.model),
        adapter=tiny_paths.adapter,
        heads=tiny_paths.heads,
        data_dir=tmp_path_factory.mktemp("data"),
        max_new_tokens=12,
    )


@pytest.fixture(scope="session")
def engine(tiny_settings: Settings) -> Iterator[Engine]:
    loaded = Engine.load(tiny_settings)
    loaded.warmup()
    yield loaded


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance connection for creating test databases, or a skip (a failure in CI)."""
    engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any reason it cannot be reached: refused, auth, unknown host
        reason = f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {str(error).splitlines()[0]}"
        if running_in_ci():
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return POSTGRES_ADMIN_URL


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
    """The tiny judge's merged export (`evalsvc export merged`) as the model, no adapter, the tiny heads."""
    return tiny_settings.model_copy(
        update={"model": str(merged_tiny[0]), "adapter": None, "heads": tiny_paths.heads}
    )
