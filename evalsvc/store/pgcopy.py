"""The bulk path for results on PostgreSQL: COPY into a staging table, then one set-based upsert.

Measured on this stack (bench/bench_store.py): `INSERT ... ON CONFLICT` sent as an executemany
(psycopg pipelines it) plus a lookup of the ids reaches about half of the 20,000 rows/s goal, and so
do multi-row VALUES (insertmanyvalues) and `unnest` arrays; COPY is the one way in that is cheap per
row. The conflict rule is unchanged: the rows move from staging to `results` with
`INSERT ... SELECT ... ON CONFLICT (content_key) DO NOTHING`, decided by the database under its locks,
so concurrent writers still end with one row per key. The ids, new and old alike, come back from one
indexed lookup.

The staging table is a temporary table per connection, created once and emptied at every commit, so
that repeated batches do not create and drop catalog entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import String, any_, bindparam, column, select, table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from evalsvc.store.models import Result

_STAGING = "results_staging"
_RESULTS = Result.__table__
_COLUMNS = tuple(c.name for c in _RESULTS.columns if c.name not in ("id", "created_at"))
_staging = table(_STAGING, *(column(name) for name in _COLUMNS))

_CREATE_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(_COLUMNS)} FROM results WITH NO DATA"
)
_COPY = f"COPY {_STAGING} ({', '.join(_COLUMNS)}) FROM STDIN"
_MOVE = (
    postgresql.insert(_RESULTS)
    .from_select(list(_COLUMNS), select(*_staging.c))
    .on_conflict_do_nothing(index_elements=["content_key"])
)
# `= ANY(array)` rather than a join with the staging table: the planner knows nothing of a temporary
# table's size and may answer a join by scanning all of `results`, which grows with every batch.
_IDS = select(_RESULTS.c.content_key, _RESULTS.c.id).where(
    _RESULTS.c.content_key == any_(bindparam("keys", type_=postgresql.ARRAY(String)))
)


def copy_results(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Upsert result rows (first writer wins) and return the id of every row's content key."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_CREATE_STAGING)
        cursor.execute(f"DELETE FROM {_STAGING}")  # earlier batches of this same transaction
        with cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row([row[name] for name in _COLUMNS])
    finally:
        cursor.close()
    session.execute(_MOVE)
    return dict(session.execute(_IDS, {"keys": list({row["content_key"] for row in rows})}).all())
