"""Schema migrations through Alembic, driven from code so they work from any working directory.

The Alembic environment is `evalsvc/store/migrations/`, package data installed with the code, so
any install (editable or not, a wheel, the Docker image) can migrate. The configuration is built here rather than
read from `alembic.ini`, which only serves people running the `alembic` tool from the repository
root; both end in `migrations/env.py`, which takes the URL given here or else `Settings`.

Concurrent upgrades are serialised: on PostgreSQL by an advisory lock taken in `env.py` inside the
migration transaction, on SQLite (whose DDL is not transactional here) by a lock file next to the
database, which is what makes "several workers open the default database at once" safe.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from evalsvc.errors import ConfigurationError, InvalidParameter, StoreSchemaOutdated, StoreUnavailable
from evalsvc.store.connection import create_db_engine, parse_database_url, sqlite_path, translate_errors

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
URL_ATTRIBUTE = "evalsvc_database_url"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for `url` (None: `Settings`), usable with every `alembic.command` function."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise ConfigurationError(
            f"the migrations directory is missing (expected {MIGRATIONS_DIR}): "
            "this evalsvc installation is incomplete; reinstall it"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # An attribute, not the `sqlalchemy.url` option: that one is %-interpolated (passwords).
        config.attributes[URL_ATTRIBUTE] = parse_database_url(url) if isinstance(url, str) else url
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "store/migrations/versions holds no revision"
    return head


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate up to `revision`; returns the revisions before and after."""
    return _migrate(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str | URL, revision: str) -> tuple[str | None, str | None]:
    """Migrate down to `revision` ("base" drops every table); returns the revisions before and after."""
    return _migrate(url, lambda config: command.downgrade(config, revision))


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Check the schema is at the head revision; with `auto_upgrade`, migrate it there first."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    url = engine.url.render_as_string(hide_password=True)
    if current is not None and current not in known_revisions():
        raise StoreSchemaOutdated(
            f"database {url} is at revision {current}, which this evalsvc does not know: "
            "it was migrated by a newer evalsvc; upgrade evalsvc"
        )
    if auto_upgrade:
        _migrate(engine.url, lambda config: command.upgrade(config, "head"))
        return
    problem = "has no evalsvc schema" if current is None else f"is at revision {current}"
    raise StoreSchemaOutdated(
        f"database {url} {problem}; this evalsvc needs {head}: run `evalsvc db upgrade`"
    )


def _migrate(url: str | URL, step: Callable[[Config], None]) -> tuple[str | None, str | None]:
    parsed = parse_database_url(url) if isinstance(url, str) else url
    config = alembic_config(parsed)
    engine = create_db_engine(parsed, pooled=False)
    try:
        with translate_errors(parsed), _sqlite_lock(parsed):
            before = current_revision(engine)
            try:
                step(config)
            except CommandError as error:
                raise InvalidParameter(f"cannot migrate: {error}") from error
            return before, current_revision(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_lock(url: URL) -> Iterator[None]:
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".migrate-lock")
    try:
        handle = lock_path.open("a")
    except OSError as error:
        raise StoreUnavailable(f"cannot open the SQLite database {path}: {error.strerror}") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
