"""Results, their model versions, and who asked for them: the content-addressed cache.

The content key is one sha256 over (query audio sha256, response audio sha256, fingerprint key,
mode) rather than a composite unique constraint over those columns: it can be computed before any
database round trip (no model-version id needed to look up a hit), a whole batch is looked up with
one `IN` over a single indexed column, and it is the one conflict target of the upsert. The four
parts are still stored as columns for reporting.

Tenants know results by their own numbers (`TenantResult.number`, see `evalsvc.store.models`):
`grant_results` hands them out, `get_result` and `tenant_result_numbers` read them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from evalsvc.errors import NotFound
from evalsvc.store.models import PROVENANCE_FIELDS, Base, ModelVersion, Result, Tenant, TenantResult
from evalsvc.store.pgcopy import copy_results
from evalsvc.store.upsert import upsert

_KEY_SCHEME = "evalsvc-result-v1"
_Key = TypeVar("_Key", str, int)
_Keyed = TypeVar("_Keyed", bound=Base)
_LOOKUP_CHUNK = 1000


class Fingerprint(Protocol):
    """What the store needs of `evalsvc.engine.types.ModelFingerprint` (structural: no engine import)."""

    @property
    def key(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ResultRecord:
    """A new result as the scoring service hands it over; `content_key` comes from `content_key()`."""

    content_key: str
    query_sha256: str
    response_sha256: str
    mode: str
    ns: float | None = None
    wa: float | None = None
    eu: float | None = None
    es: float | None = None
    avg: float | None = None
    assessment: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    query_duration_s: float | None = None
    response_duration_s: float | None = None


def content_key(query_sha256: str, response_sha256: str, fingerprint_key: str, mode: str) -> str:
    """The cache key of one judgement: same audio, same model version, same mode, same key."""
    parts = (_KEY_SCHEME, query_sha256, response_sha256, fingerprint_key, mode)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def ensure_model_version(session: Session, fingerprint: Fingerprint) -> int:
    """Id of the model version row for `fingerprint`, inserting it with its full provenance if new."""
    provenance = fingerprint.to_dict()
    return ensure_version_row(session, {name: provenance[name] for name in PROVENANCE_FIELDS})


def ensure_version_row(session: Session, row: Mapping[str, Any]) -> int:
    """Id of the `model_versions` row with `row["fingerprint"]`, inserting `row` if there is none."""
    upsert(session, ModelVersion, [row], conflict=["fingerprint"])
    return session.scalars(
        select(ModelVersion.id).where(ModelVersion.fingerprint == row["fingerprint"])
    ).one()


def find_results(session: Session, keys: Iterable[str]) -> dict[str, Result]:
    """Stored results by content key; keys with no result are absent. One query per 1000 keys."""
    return rows_by_content_key(session, Result, keys)


def rows_by_content_key(session: Session, model: type[_Keyed], keys: Iterable[str]) -> dict[str, _Keyed]:
    """Rows of a content-keyed table (`results`, `llm_verdicts`) by key, one query per 1000 keys."""
    found: dict[str, _Keyed] = {}
    for chunk in lookup_chunks(keys):
        query = select(model).where(model.content_key.in_(chunk))  # type: ignore[attr-defined]
        found.update((row.content_key, row) for row in session.scalars(query))  # type: ignore[attr-defined]
    return found


def store_results(session: Session, model_version_id: int, records: Sequence[ResultRecord]) -> dict[str, int]:
    """Insert new results in batches and return every record's id by content key.

    A key that is already stored keeps its existing row (first writer wins, also across processes) and
    its existing id is returned, so callers can link to it either way. PostgreSQL takes the COPY path
    (`pgcopy`), SQLite the batched upsert.
    """
    # `vars`, not `dataclasses.asdict`: asdict deep-copies every field and would cost a third of the time.
    rows = [vars(record) | {"model_version_id": model_version_id} for record in records]
    if not rows:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        return copy_results(session, rows)
    upsert(session, Result, rows, conflict=["content_key"])
    return result_ids(session, (record.content_key for record in records))


def result_ids(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Ids of stored results by content key, without loading the rows."""
    ids: dict[str, int] = {}
    for chunk in lookup_chunks(keys):
        ids.update(
            session.execute(select(Result.content_key, Result.id).where(Result.content_key.in_(chunk))).all()
        )
    return ids


@dataclass(frozen=True)
class Grant:
    """A result as one tenant knows it: its number for the tenant, and whether it is new to the tenant."""

    number: int
    new: bool


def grant_results(session: Session, tenant_id: int, result_ids: Iterable[int]) -> dict[int, Grant]:
    """Make results visible to a tenant (idempotent): it asked for them, scored or from the cache.

    Returns each result's `Grant` by result id. A result new to the tenant gets the next numbers of
    the tenant's counter, taken with one `UPDATE ... RETURNING`, which also serialises concurrent
    grants of one tenant (a row lock on PostgreSQL until commit; SQLite has one writer anyway). A
    grant made meanwhile by another transaction keeps its number: the insert skips it.
    """
    wanted = list(dict.fromkeys(result_ids))
    held = tenant_result_numbers(session, tenant_id, wanted)
    new = [result_id for result_id in wanted if result_id not in held]
    if not new:
        return {result_id: Grant(held[result_id], new=False) for result_id in wanted}
    last = session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(last_result_number=Tenant.last_result_number + len(new))
        .returning(Tenant.last_result_number)
    ).scalar_one_or_none()
    if last is None:
        raise NotFound(f"no tenant {tenant_id}")
    first = last - len(new) + 1
    rows: list[Mapping[str, Any]] = [
        {"tenant_id": tenant_id, "result_id": result_id, "number": first + offset}
        for offset, result_id in enumerate(new)
    ]
    upsert(session, TenantResult, rows, conflict=["tenant_id", "result_id"])
    numbers = held | tenant_result_numbers(session, tenant_id, new)
    return {result_id: Grant(numbers[result_id], new=result_id not in held) for result_id in wanted}


def tenant_result_numbers(session: Session, tenant_id: int, result_ids: Iterable[int]) -> dict[int, int]:
    """The tenant's numbers of those results it holds, by result id (the others are absent)."""
    numbers: dict[int, int] = {}
    for chunk in lookup_chunks(result_ids):
        numbers.update(
            session.execute(
                select(TenantResult.result_id, TenantResult.number).where(
                    TenantResult.tenant_id == tenant_id, TenantResult.result_id.in_(chunk)
                )
            ).all()
        )
    return numbers


def get_result(session: Session, result_id: int, *, tenant_id: int | None = None) -> Result | None:
    """One result by id; with `tenant_id`, by the tenant's own number for it (None unless it has one)."""
    if tenant_id is None:
        return session.get(Result, result_id)
    query = (
        select(Result)
        .join(TenantResult)
        .where(TenantResult.tenant_id == tenant_id, TenantResult.number == result_id)
    )
    return session.scalars(query).one_or_none()


def lookup_chunks(keys: Iterable[_Key]) -> Iterator[list[_Key]]:
    """Distinct keys in slices small enough for one `IN (...)` on every backend."""
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        yield wanted[start : start + _LOOKUP_CHUNK]
