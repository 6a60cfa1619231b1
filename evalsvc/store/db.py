"""Connections to the store: one lazily created engine per process, sessions that commit or roll back.

Nothing connects at import time and a `Store` opens its engine on first use, in the process that uses
it: LitServe forks its API server processes and RQ forks its work horses, and a connection pool must
never be shared across a fork. A `Store` used in a child of the process that opened it starts over
with a pool of its own.

SQLite (the default: one file in the data directory) gets WAL (readers do not block the writer),
enforced foreign keys (off by default in SQLite) and a busy timeout, so that several processes
writing the same file wait for each other instead of failing with "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from evalsvc.errors import InvalidParameter, StoreUnavailable
from evalsvc.settings import Settings

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 5


def parse_database_url(url: str) -> URL:
    """Parse and vet a database URL, so a typo is reported as such rather than as a driver traceback."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise InvalidParameter(f"invalid database URL {url!r}: {error}") from error
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise InvalidParameter(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # The bare scheme means psycopg2 to SQLAlchemy, which is not installed; psycopg 3 is.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def create_db_engine(url: str | URL, *, pooled: bool = True) -> Engine:
    """An engine with the per-backend settings above; `pooled=False` for one-off tools (migrations)."""
    parsed = parse_database_url(url) if isinstance(url, str) else url
    options: dict[str, object] = {} if pooled else {"poolclass": NullPool}
    try:
        if parsed.get_backend_name() == "postgresql":
            engine = create_engine(
                parsed,
                pool_pre_ping=True,
                connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
                **options,
            )
        else:
            engine = create_engine(parsed, **options)
            event.listen(engine, "connect", _sqlite_pragmas)
    except (exc.ArgumentError, exc.NoSuchModuleError) as error:
        raise InvalidParameter(f"cannot use database URL {parsed!r}: {error}") from error
    return engine


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable at every checkpoint, which is enough with WAL
    _use_wal(cursor)
    cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (it stays so); retried, because SQLite does not wait for this one.

    The switch needs the file to itself and fails at once with "database is locked" while another
    process has it open, whatever the busy timeout: several workers opening a new database collide here.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn "cannot reach the database" driver errors into `StoreUnavailable` with a readable message."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise StoreUnavailable(
            f"database {url.render_as_string(hide_password=True)} is unavailable: {reason}"
        ) from error


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
        from evalsvc.store.migrate import ensure_schema

        path = sqlite_path(self.url)
        if self.auto_upgrade and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_db_engine(self.url)
        with translate_errors(self.url):
            ensure_schema(engine, auto_upgrade=self.auto_upgrade)
        # Objects stay readable after commit: callers get results back from a closed session.
        self._opened = _Opened(engine, sessionmaker(engine, expire_on_commit=False), os.getpid())
        return self._opened
