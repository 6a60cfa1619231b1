"""The `Store` handle every caller gets: a database URL in, transactions out.

Nothing connects at import time and a `Store` opens its engine on first use, in the process that uses
it: LitServe forks its API server processes and RQ forks its work horses, and a connection pool must
never be shared across a fork. A `Store` used in a child of the process that opened it starts over
with a pool of its own. On first use it checks (or, for the default SQLite file, brings) the schema
to the head revision (`evalsvc.store.migrate`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from evalsvc.settings import Settings
from evalsvc.store.connection import create_db_engine, parse_database_url, sqlite_path, translate_errors
from evalsvc.store.migrate import ensure_schema


@dataclass(frozen=True)
class _Opened:
    engine: Engine
    sessions: sessionmaker[Session]
    pid: int


class Store:
    """The handle every caller gets: URL in, sessions out; see the module docstring for lifecycle.

    `auto_upgrade` migrates the schema to the latest revision on first use; it is meant for the
    default SQLite file, which nobody else manages. Other databases are migrated explicitly with
    `evalsvc db upgrade`, and a store whose schema is behind refuses to work (`StoreSchemaOutdated`).
    """

    def __init__(self, url: str, *, auto_upgrade: bool = False) -> None:
        self.url = parse_database_url(url)
        self.auto_upgrade = auto_upgrade
        self._opened: _Opened | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The configured database; the default SQLite file is created and migrated on first use."""
        return cls(settings.resolved_database_url, auto_upgrade=settings.database_url is None)

    @property
    def engine(self) -> Engine:
        return self._open().engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        sessions = self._open().sessions
        with translate_errors(self.url), sessions.begin() as session:
            yield session

    def check(self) -> None:
        """Raise `StoreUnavailable` (or `StoreSchemaOutdated`) unless the database answers now."""
        with self.session() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close this process's connections; the next use opens new ones."""
        if self._opened is not None and self._opened.pid == os.getpid():
            self._opened.engine.dispose()
        self._opened = None

    def _open(self) -> _Opened:
        if self._opened is not None and self._opened.pid == os.getpid():
            return self._opened
        if self._opened is not None:
            # Inherited through a fork: leave the parent's connections alone, never use them here.
            self._opened.engine.dispose(close=False)
        path = sqlite_path(self.url)
        if self.auto_upgrade and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_db_engine(self.url)
        with translate_errors(self.url):
            ensure_schema(engine, auto_upgrade=self.auto_upgrade)
        # Objects stay readable after commit: callers get results back from a closed session.
        self._opened = _Opened(engine, sessionmaker(engine, expire_on_commit=False), os.getpid())
        return self._opened
