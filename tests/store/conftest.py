"""Fixtures of the store tests: every test runs once on SQLite and once on a real PostgreSQL.

Each test gets a database of its own: a fresh SQLite file, or a fresh PostgreSQL database created for
it and dropped afterwards (both take milliseconds), so tests never see each other's rows and may run
migrations, concurrent writers and CLI calls against it.

PostgreSQL is found at TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432, database `test`, used
only to create and drop the per-test databases). When it is unreachable the PostgreSQL variants are
skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from evalsvc.store.scratch import scratch_postgres
from tests.helpers import running_in_ci

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


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
