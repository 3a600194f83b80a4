"""The tenant's event-type catalogue: ``/v1/event-types`` (see :mod:`webhooks.stores.catalogue`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import CallerDep, StoreDep, TenantDep, resolve_tenant
from api.errors import responses
from api.schemas import EventTypeCreate, EventTypeUpdate
from webhooks.intake.event_types import EventType
from webhooks.models import Page
from webhooks.stores.catalogue import EventTypeStore
from webhooks.timefmt import now_ms

router = APIRouter(prefix="/v1/event-types", tags=["event types"], responses=responses(401, 404, 422, 503))


async def _catalogue(store: StoreDep) -> EventTypeStore:
    return EventTypeStore(store.r)


CatalogueDep = Annotated[EventTypeStore, Depends(_catalogue)]


@router.post("", status_code=201, response_model=EventType, responses=responses(409, 413, 415))
async def create_event_type(
    body: EventTypeCreate,
    who: CallerDep,
    store: StoreDep,
    catalogue: CatalogueDep,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EventType:
    tenant = await resolve_tenant(who, store, tenant_id or body.tenant_id)
    return await catalogue.create(
        tenant,
        name=body.name,
        now_ms=now_ms(),
        description=body.description,
        schema=body.json_schema,
        archived=body.archived,
    )


@router.get("", response_model=Page[EventType])
async def list_event_types(
    tenant: TenantDep,
    catalogue: CatalogueDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    include_archived: bool = False,
) -> Page[EventType]:
    return await catalogue.list(tenant, limit, cursor, include_archived=include_archived)


@router.get("/{name}", response_model=EventType)
async def get_event_type(name: str, tenant: TenantDep, catalogue: CatalogueDep) -> EventType:
    return await catalogue.get(tenant, name)


@router.patch("/{name}", response_model=EventType, responses=responses(413, 415))
async def update_event_type(
    name: str, body: EventTypeUpdate, tenant: TenantDep, catalogue: CatalogueDep
) -> EventType:
    changes = body.model_dump(exclude_unset=True, by_alias=True)
    return await catalogue.update(tenant, name, changes, now_ms())


@router.delete("/{name}", status_code=204)
async def delete_event_type(name: str, tenant: TenantDep, catalogue: CatalogueDep) -> Response:
    await catalogue.delete(tenant, name)
    return Response(status_code=204)
