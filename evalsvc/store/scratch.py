"""A PostgreSQL database that exists for one test or one benchmark run, then is dropped.

The one way the test suite and `bench/` get a database of their own on a shared server: a unique name
(nobody else's rows, nothing dropped that the caller did not create), optionally migrated to the head
revision, and dropped on exit even when the block fails. `admin_url` is a maintenance connection
(any database of the server the caller may `CREATE DATABASE` from).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evalsvc.store.migrate import upgrade

CONNECT_TIMEOUT_S = 3


@contextmanager
def scratch_postgres(
    admin_url: str, *, prefix: str = "evalsvc_scratch", migrated: bool = True
) -> Iterator[str]:
    """The URL of a new database (`migrated`: at the head revision; else empty) on the server of
    `admin_url`; dropped on exit. Raises the driver's error when the server cannot be reached."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            if migrated:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
