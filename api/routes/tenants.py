from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import AdminDep, Caller, CallerDep, StoreDep
from api.errors import responses
from api.schemas import TenantCreate, TenantUpdate
from webhooks.errors import Forbidden, NotFound
from webhooks.models import ApiKey, ApiKeyCreated, Page, Tenant, TenantCreated, TenantDeletion
from webhooks.stores import operations
from webhooks.stores.catalogue import EventTypeStore
from webhooks.timefmt import now_ms

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses=responses(401, 403, 404, 422, 503))


@router.post("", status_code=201, response_model=TenantCreated, responses=responses(413, 415))
async def create_tenant(body: TenantCreate, _: AdminDep, store: StoreDep) -> TenantCreated:
    return await store.tenants.create_tenant(body.name, now_ms())


@router.get("", response_model=Page[Tenant])
async def list_tenants(
    _: AdminDep,
    store: StoreDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Tenant]:
    return await store.tenants.list_tenants(limit, cursor)


def _own(who: Caller, tenant_id: str) -> None:
    if not who.is_admin and who.tenant_id != tenant_id:
        raise NotFound("no such tenant")


@router.get("/{tenant_id}", response_model=Tenant)
async def get_tenant(tenant_id: str, who: CallerDep, store: StoreDep) -> Tenant:
    _own(who, tenant_id)
    tenant = await store.tenants.get_tenant(tenant_id)
    tenant.storage = await store.tenants.storage(tenant_id)
    return tenant


@router.patch("/{tenant_id}", response_model=Tenant, responses=responses(413, 415))
async def update_tenant(tenant_id: str, body: TenantUpdate, who: CallerDep, store: StoreDep) -> Tenant:
    """The tenant's own settings (its key or the admin): ``strict_event_types``; the admin only:
    ``max_share``, its share of Redis' memory (null: the default)."""
    _own(who, tenant_id)
    await store.tenants.get_tenant(tenant_id)
    if "max_share" in body.model_fields_set:
        if not who.is_admin:
            raise Forbidden("max_share: only the admin sets a tenant's share of storage")
        await store.tenants.set_max_share(tenant_id, body.max_share)
    if body.strict_event_types is not None:
        await EventTypeStore(store.r).set_strict(tenant_id, body.strict_event_types)
    return await store.tenants.get_tenant(tenant_id)


@router.delete("/{tenant_id}", status_code=204, response_class=Response, responses=responses(409))
async def delete_tenant(tenant_id: str, _: AdminDep, store: StoreDep) -> Response:
    """The tenant vanishes at once (keys, endpoints, record): 204, as the contract has it; an RQ job
    whose id is the tenant id then deletes its data. ``Location`` names where to follow it
    (``GET /v1/tenants/{id}/deletion``: ``deleting``, ``done``, ``failed``)."""
    await store.start_tenant_deletion(tenant_id, now_ms())
    return Response(status_code=204, headers={"Location": f"/v1/tenants/{tenant_id}/deletion"})


@router.get("/{tenant_id}/deletion", response_model=TenantDeletion)
async def get_tenant_deletion(tenant_id: str, _: AdminDep, store: StoreDep) -> TenantDeletion:
    """A tenant's deletion and its progress (``deleted_keys``), kept 30 days."""
    return await operations.get_deletion(store.r, tenant_id)


@router.post(
    "/{tenant_id}/api-keys", status_code=201, response_model=ApiKeyCreated, responses=responses(413, 415)
)
async def create_api_key(tenant_id: str, who: CallerDep, store: StoreDep) -> ApiKeyCreated:
    _own(who, tenant_id)
    await store.tenants.get_tenant(tenant_id)
    return await store.tenants.create_api_key(tenant_id, now_ms())


@router.get("/{tenant_id}/api-keys", response_model=list[ApiKey])
async def list_api_keys(tenant_id: str, who: CallerDep, store: StoreDep) -> list[ApiKey]:
    _own(who, tenant_id)
    await store.tenants.get_tenant(tenant_id)
    return await store.tenants.list_api_keys(tenant_id)


@router.delete("/{tenant_id}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(tenant_id: str, key_id: str, who: CallerDep, store: StoreDep) -> Response:
    _own(who, tenant_id)
    await store.tenants.revoke_api_key(tenant_id, key_id)
    return Response(status_code=204)
