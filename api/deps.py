"""Request context: the store, the clock, and who is calling.

Credentials arrive as ``Authorization: Bearer <token>``. The admin token is
compared in constant time; a tenant API key is looked up by its hash. A
tenant-scoped route called with the admin token needs ``tenant_id`` (query
parameter, or the body field where a body has one).
"""

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from webhooks.errors import Forbidden, Invalid, NotFound, Unauthorized
from webhooks.stores.store import Store
from webhooks.timefmt import now_ms


@dataclass(frozen=True, slots=True)
class Caller:
    is_admin: bool
    tenant_id: str | None  # the key's tenant; None for the admin


@dataclass
class AppState:
    store: Store
    admin_token: str | None


def app_state(request: Request) -> AppState:  # plain helper, not a dependency
    state: AppState = request.app.state.webhooks
    return state


async def get_store(request: Request) -> Store:  # async: sync dependencies run in a thread pool
    return app_state(request).store


async def caller(request: Request) -> Caller:
    return await caller_from_header(app_state(request), request.headers.get("authorization", ""))


async def caller_from_header(state: AppState, header: str) -> Caller:
    """Who sends this ``Authorization`` value (also used by the ingest fast path, :mod:`api.ingest`)."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <admin token or tenant API key>'")
    if state.admin_token and hmac.compare_digest(token.encode(), state.admin_token.encode()):
        return Caller(is_admin=True, tenant_id=None)
    tenant_id = await state.store.auth.tenant_for(token, now_ms())
    return Caller(is_admin=False, tenant_id=tenant_id)


CallerDep = Annotated[Caller, Depends(caller)]
StoreDep = Annotated[Store, Depends(get_store)]


async def admin(who: CallerDep) -> Caller:
    if not who.is_admin:
        raise Forbidden("this route needs the admin token")
    return who


async def resolve_tenant(who: Caller, store: Store, tenant_id: str | None) -> str:
    """The tenant a call acts for: the key's own, or the admin's ``tenant_id`` (which must exist)."""
    if who.is_admin:
        if not tenant_id:
            raise Invalid("tenant_id: the admin token acts for a tenant named by tenant_id")
        await store.tenants.get_tenant(tenant_id)
        return tenant_id
    assert who.tenant_id is not None
    if tenant_id and tenant_id != who.tenant_id:
        raise NotFound("no such tenant")
    return who.tenant_id


async def tenant_scope(
    who: CallerDep, store: StoreDep, tenant_id: Annotated[str | None, Query(max_length=64)] = None
) -> str:
    return await resolve_tenant(who, store, tenant_id)


TenantDep = Annotated[str, Depends(tenant_scope)]
AdminDep = Annotated[Caller, Depends(admin)]
