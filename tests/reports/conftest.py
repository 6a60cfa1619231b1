"""Fixtures of the report tests: a database per test module and backend (SQLite and PostgreSQL).

Report tests mostly read, so each module seeds its runs once per backend (`module_store`) rather than
once per test; the databases are made as the store tests make theirs, through the same PostgreSQL
fixture: skipped when PostgreSQL is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from evalsvc.store.scratch import scratch_postgres
from tests.store.conftest import BACKENDS

__all__ = ["module_store"]


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
    with scratch_postgres(request.getfixturevalue("postgres_admin_url"), prefix="evalsvc_reports") as url:
        opened = Store(url)
        yield opened
        opened.dispose()
