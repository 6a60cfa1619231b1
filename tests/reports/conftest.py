"""Fixtures of the report tests: a database per test module and backend (SQLite and PostgreSQL).

Report tests mostly read, so each module seeds its runs once per backend (`module_store`) rather than
once per test; the databases are made as the store tests make theirs, through the same PostgreSQL
fixture: skipped when PostgreSQL is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from tests.store.conftest import BACKENDS, postgres_admin_url

__all__ = ["module_store", "postgres_admin_url"]


@pytest.fixture(scope="module", params=BACKENDS)
def module_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A migrated, empty database shared by the tests of one module (one per backend)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'store.sqlite3'}"
        upgrade(url)
        opened = Store(url)
        yield opened
        opened.dispose()
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"evalsvc_reports_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        opened = Store(url)
        yield opened
        opened.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
