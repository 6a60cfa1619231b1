"""Tenants and their API keys.

`LOCAL_TENANT` is the tenant of the single-user CLI and of a server with auth turned off; it and any
tenant named on the command line are created on first use (`ensure_tenant`).

Keys are random 256-bit tokens, so a plain sha256 is enough to store them safely (no slow password
hash needed: there is nothing to guess); the key itself is shown once, when issued, and never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter, StoreUnavailable
from evalsvc.store.handle import Store
from evalsvc.store.models import ApiKey, Tenant

API_KEY_PREFIX = "evs_"
LOCAL_TENANT = "local"


@dataclass(frozen=True)
class TenantRef:
    """A tenant as plain values, so nothing holds a database session past the lookup."""

    id: int
    name: str


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(session: Session, name: str) -> Tenant:
    if not name.strip():
        raise InvalidParameter("a tenant name must not be empty")
    if session.scalars(select(Tenant.id).where(Tenant.name == name)).first() is not None:
        raise InvalidParameter(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def issue_api_key(session: Session, tenant_id: int, name: str) -> tuple[ApiKey, str]:
    """A new key for the tenant: the row, and the key itself (the only time it is available)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant_id, key_sha256=hash_api_key(key), prefix=key[:12], name=name)
    session.add(row)
    session.flush()
    return row, key


def tenant_for_api_key(session: Session, key: str) -> Tenant | None:
    """The tenant a presented key belongs to; None for unknown and revoked keys alike."""
    return session.scalars(
        select(Tenant).join(ApiKey).where(ApiKey.key_sha256 == hash_api_key(key), ApiKey.revoked_at.is_(None))
    ).one_or_none()


def revoke_api_key(session: Session, key_id: int) -> None:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise InvalidParameter(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = func.now()


def ensure_tenant(store: Store, name: str) -> TenantRef:
    """The tenant called `name`, created if missing; safe when several processes race to create it."""
    for _attempt in range(2):
        try:
            with store.session() as session:
                tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
                tenant = tenant or create_tenant(session, name)
                return TenantRef(tenant.id, tenant.name)
        except IntegrityError:
            continue  # another process created it between our select and insert: select again
    raise StoreUnavailable(f"could not create tenant {name!r}")
