"""Alembic environment of the evalsvc store.

The URL comes from the caller (`evalsvc db ...`, `evalsvc.store.migrate`) or else from `Settings`
(`EVALSVC_DATABASE_URL`, default: the SQLite file in the data directory), never from alembic.ini, so
the `alembic` tool and the service always agree on which database they mean.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import URL

from evalsvc.settings import Settings
from evalsvc.store.connection import create_db_engine
from evalsvc.store.migrate import URL_ATTRIBUTE
from evalsvc.store.models import Base

# Any constant works; it only has to be the same in every process that migrates this database.
_POSTGRES_MIGRATION_LOCK = 0x65766C73  # "evls"


def _url() -> str | URL:
    return context.config.attributes.get(URL_ATTRIBUTE) or Settings().resolved_database_url


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: write the DDL out instead of running it."""
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(_url(), pooled=False)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Held until commit: a second concurrent upgrade waits, then finds nothing to do.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
