"""Fixtures of the training tests: the store tests' databases, SQLite and PostgreSQL, per test.

As there, the PostgreSQL variants are skipped when it is unreachable, except in CI (CI=true), where
they fail. `sqlite_store` is for tests of files and messages, which do not depend on the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from tests.store.conftest import db_url, migrated_url, store

__all__ = ["db_url", "migrated_url", "sqlite_store", "store"]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    upgrade(url)
    opened = Store(url)
    yield opened
    opened.dispose()
