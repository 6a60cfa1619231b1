"""Tenant scoping of every read: which runs, label sets and tenants a caller may see.

`tenant_id` None is the local, single-user CLI (it sees everything in its database); an HTTP caller
always has a tenant. Another tenant's run or label set answers exactly as a missing one does
(`NotFound`), so ids and names of other tenants cannot be probed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from evalsvc.errors import NotFound
from evalsvc.ids import MAX_RUN_ID
from evalsvc.store import LabelSet, Run, Tenant


def get_run(session: Session, run_id: int, *, tenant_id: int | None = None) -> Run:
    """The run; with `tenant_id`, only if that tenant may see it (another tenant's run looks absent)."""
    run = session.get(Run, run_id) if 1 <= run_id <= MAX_RUN_ID else None  # PostgreSQL refuses larger
    if run is None or (tenant_id is not None and run.tenant_id != tenant_id):
        raise NotFound(f"no run {run_id}")
    return run


def runs_for(session: Session, run_ids: Sequence[int], tenant_id: int | None) -> list[Run]:
    return [get_run(session, run_id, tenant_id=tenant_id) for run_id in dict.fromkeys(run_ids)]


def visible_runs(tenant_id: int | None) -> ColumnElement[bool]:
    """The WHERE condition on `runs` that limits a query to the tenant's runs."""
    return true() if tenant_id is None else Run.tenant_id == tenant_id


def label_set_for(session: Session, name: str, tenant_id: int | None) -> LabelSet:
    """The label set called `name`, if `tenant_id` may see it."""
    label_set = session.scalars(select(LabelSet).where(LabelSet.name == name)).one_or_none()
    if label_set is None or (tenant_id is not None and label_set.tenant_id != tenant_id):
        raise NotFound(f"no label set {name!r}")
    return label_set


def tenant_id_by_name(session: Session, name: str | None) -> int | None:
    """The id of the tenant called `name` (the CLI's `--tenant`); None when no name is given."""
    if name is None:
        return None
    tenant_id = session.scalars(select(Tenant.id).where(Tenant.name == name)).one_or_none()
    if tenant_id is None:
        raise NotFound(f"no tenant {name!r}")
    return tenant_id
