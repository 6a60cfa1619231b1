"""One batched, concurrency-safe upsert for both backends.

`INSERT ... ON CONFLICT` is decided by the database under its own locks, so two processes writing the
same key at the same time end with one row, never an error and never a duplicate; a
read-then-insert in Python could not promise that. PostgreSQL and SQLite spell it the same way but
through different SQLAlchemy dialect constructs, hence the dispatch here.

Rows go in as one statement executed with many parameter sets: SQLAlchemy turns that into multi-row
`VALUES` batches ("insertmanyvalues") on PostgreSQL and `executemany` on SQLite, which is what makes
bulk writes fast (see bench/bench_store.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from evalsvc.store.models import Base

BATCH_ROWS = 1000


def upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Insert `rows`; where `conflict` columns match an existing row, update `update` columns or skip.

    With no `update` columns the first writer wins, which is right for content-addressed rows (the same
    key means the same content). A table with an `updated_at` column gets it refreshed on update.
    """
    if not rows:
        return
    # The Core table, not the ORM entity: the ORM bulk path costs several times more per row.
    table = cast(Table, model.__table__)
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    statement = insert(table)
    if update:
        # PostgreSQL refuses to update one row twice in a statement: the last row for a key wins.
        rows = list({tuple(row[column] for column in conflict): row for row in rows}.values())
        changes: dict[str, Any] = {column: statement.excluded[column] for column in update}
        if "updated_at" in table.c:
            changes["updated_at"] = func.now()
        statement = statement.on_conflict_do_update(index_elements=list(conflict), set_=changes)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    for start in range(0, len(rows), BATCH_ROWS):
        session.execute(statement, list(rows[start : start + BATCH_ROWS]))
