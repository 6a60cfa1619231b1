"""Results, their model versions, and who asked for them: the content-addressed cache.

The content key is one sha256 over (query audio sha256, response audio sha256, fingerprint key,
mode) rather than a composite unique constraint over those columns: it can be computed before any
database round trip (no model-version id needed to look up a hit), a whole batch is looked up with
one `IN` over a single indexed column, and it is the one conflict target of the upsert. The four
parts are still stored as columns for reporting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from evalsvc.store.models import ModelVersion, Result, TenantResult
from evalsvc.store.pgcopy import copy_results
from evalsvc.store.upsert import upsert

_KEY_SCHEME = "evalsvc-result-v1"
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
    row = {
        "fingerprint": fingerprint.key,
        "backbone": provenance["backbone"],
        "model_id": provenance["model_id"],
        "model_revision": provenance["model_revision"],
        "weights_sha256": provenance["weights_sha256"],
        "adapter_sha256": provenance["adapter_sha256"],
        "heads_sha256": provenance["heads_sha256"],
        "prompt_version": provenance["prompt_version"],
        "profile": provenance["profile"],
        "decoding": provenance["decoding"],
        "packages": provenance["packages"],
    }
    upsert(session, ModelVersion, [row], conflict=["fingerprint"])
    return session.scalars(select(ModelVersion.id).where(ModelVersion.fingerprint == fingerprint.key)).one()


def find_results(session: Session, keys: Iterable[str]) -> dict[str, Result]:
    """Stored results by content key; keys with no result are absent. One query per 1000 keys."""
    found: dict[str, Result] = {}
    for chunk in _chunks(keys):
        found.update(
            (row.content_key, row)
            for row in session.scalars(select(Result).where(Result.content_key.in_(chunk)))
        )
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
    for chunk in _chunks(keys):
        ids.update(
            session.execute(select(Result.content_key, Result.id).where(Result.content_key.in_(chunk))).all()
        )
    return ids


def grant_results(session: Session, tenant_id: int, result_ids: Iterable[int]) -> None:
    """Make results visible to a tenant (idempotent): it asked for them, scored or from the cache."""
    rows: list[Mapping[str, Any]] = [
        {"tenant_id": tenant_id, "result_id": rid} for rid in dict.fromkeys(result_ids)
    ]
    upsert(session, TenantResult, rows, conflict=["tenant_id", "result_id"])


def get_result(session: Session, result_id: int, *, tenant_id: int | None = None) -> Result | None:
    """One result by id; with `tenant_id`, only if that tenant asked for it (else None, as if absent)."""
    query = select(Result).where(Result.id == result_id)
    if tenant_id is not None:
        query = query.join(TenantResult).where(TenantResult.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    """Distinct keys in slices small enough for one `IN (...)` on every backend."""
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        yield wanted[start : start + _LOOKUP_CHUNK]
