"""API-key authentication as a pure-ASGI middleware: every route needs a key except the probes, `/`
(what this server is) and the documentation (`/docs`, `/openapi.json`).

A key arrives as `Authorization: Bearer KEY` or `X-API-Key: KEY` and is looked up (by its sha256) in
the store; the tenant it belongs to is put in the ASGI scope for the routes (`tenant_of`). LitServe's
own `LIT_SERVER_API_KEY` is not used: it is one key for everyone, read at import, and it also guards
`/health`, which load balancers must reach without one.

With auth turned off (allowed on loopback only, see `Settings`), every request acts as the tenant
`LOCAL_TENANT`, created on first use.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from evalsvc.api.docs import ASSETS_PATH, DOCS_PATH
from evalsvc.api.responses import send_error
from evalsvc.errors import StoreError, Unauthorized
from evalsvc.store import Store, tenant_for_api_key
from evalsvc.store.tenants import LOCAL_TENANT, TenantRef, ensure_tenant

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/metrics", "/openapi.json", DOCS_PATH})
PUBLIC_PREFIXES = (f"{ASSETS_PATH}/",)
_SCOPE_KEY = "evalsvc.tenant"


def tenant_of(connection: HTTPConnection) -> TenantRef:
    """The authenticated tenant of a request that passed `AuthMiddleware`."""
    return connection.scope[_SCOPE_KEY]


def presented_key(connection: HTTPConnection) -> str | None:
    """The one API key the request presents; None when it presents none.

    A request that presents a credential evalsvc cannot use (another `Authorization` scheme) or two
    different keys is refused (`Unauthorized`), even if one of them is valid: which of two
    credentials the caller meant is not for the server to guess.
    """
    authorization = connection.headers.get("authorization")
    header_key = connection.headers.get("x-api-key", "").strip() or None
    if authorization is None:
        return header_key
    scheme, _, credentials = authorization.partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    if not bearer:
        raise Unauthorized("the Authorization header must be 'Bearer KEY'")
    if header_key is not None and header_key != bearer:
        raise Unauthorized("two different API keys (Authorization and X-API-Key); send one")
    return bearer


class TenantResolver:
    """Key -> tenant through the store (or the local tenant when auth is off)."""

    def __init__(self, store: Store, *, auth_enabled: bool) -> None:
        self.store = store
        self.auth_enabled = auth_enabled
        self._local: TenantRef | None = None

    def resolve(self, key: str | None) -> TenantRef | None:
        """Blocking (database); None when the key is missing, unknown or revoked."""
        if not self.auth_enabled:
            return self._local_tenant()
        if key is None:
            return None
        with self.store.session() as session:
            tenant = tenant_for_api_key(session, key)
            return TenantRef(tenant.id, tenant.name) if tenant is not None else None

    def _local_tenant(self) -> TenantRef:
        if self._local is None:
            self._local = ensure_tenant(self.store, LOCAL_TENANT)
        return self._local


class AuthMiddleware:
    def __init__(self, app: ASGIApp, resolver: TenantResolver) -> None:
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            key = presented_key(HTTPConnection(scope))
            tenant = await run_in_threadpool(self.resolver.resolve, key)
        except (StoreError, Unauthorized) as error:
            await send_error(send, error)
            return
        if tenant is None:
            await send_error(
                send,
                Unauthorized("a valid API key is required: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"),
            )
            return
        scope[_SCOPE_KEY] = tenant
        await self.app(scope, receive, send)
