"""A migrated PostgreSQL database that exists for one benchmark run, then is dropped.

Shared by the benchmarks that measure the store (bench_store, bench_reports, bench_bulk): each run
starts from an empty schema on the server of `admin_url` and leaves nothing behind, even when the
run fails. The scripts import it as a sibling module (`python bench/NAME.py` puts bench/ on the path).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evalsvc.store.migrate import upgrade


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """The URL of a new, migrated database on the server of `admin_url`; dropped on exit."""
    name = f"evalsvc_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
