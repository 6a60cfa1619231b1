"""Fixtures of the training tests: the store tests' databases, SQLite and PostgreSQL, per test.

As there, the PostgreSQL variants are skipped when it is unreachable, except in CI (CI=true), where
they fail.
"""

from __future__ import annotations

from tests.store.conftest import db_url, migrated_url, postgres_admin_url, store

__all__ = ["db_url", "migrated_url", "postgres_admin_url", "store"]
