"""Database connections: vetted URLs, engines with each backend's settings, readable "unreachable" errors.

The layer below both the `Store` handle (`evalsvc.store.handle`) and the migrations
(`evalsvc.store.migrate`), which both open engines here; the handle needs the migrations, so they
cannot share a module without importing each other.

SQLite (the default: one file in the data directory) gets WAL (readers do not block the writer),
enforced foreign keys (off by default in SQLite) and a busy timeout, so that several processes
writing the same file wait for each other instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from evalsvc.errors import InvalidParameter, StoreUnavailable

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
