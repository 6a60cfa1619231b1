"""Fixtures of the store tests: every test runs once on SQLite and once on a real PostgreSQL.

Each test gets a database of its own: a fresh SQLite file, or a fresh PostgreSQL database created for
it and dropped afterwards (both take milliseconds), so tests never see each other's rows and may run
migrations, concurrent writers and CLI calls against it.

PostgreSQL is the server of `postgres_admin_url` (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from evalsvc.store.scratch import scratch_postgres

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database (no tables), dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with scratch_postgres(
        request.getfixturevalue("postgres_admin_url"), prefix="evalsvc_test", migrated=False
    ) as url:
        yield url


@pytest.fixture
def migrated_url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    opened = Store(migrated_url)
    yield opened
    opened.dispose()
