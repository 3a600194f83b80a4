from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CallerDep, StoreDep, resolve_tenant
from api.errors import responses
from api.schemas import ReplayRequest
from webhooks.models import Delivery, Page, ReplayResult
from webhooks.stores.store import DeadFilter
from webhooks.timefmt import ms_from_datetime, now_ms

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], responses=responses(401, 404, 422, 503))


async def scope_of(who: CallerDep, store: StoreDep, tenant_id: str | None) -> str | None:
    """Admin without tenant_id sees every tenant; anyone else sees one tenant."""
    if who.is_admin and not tenant_id:
        return None
    return await resolve_tenant(who, store, tenant_id)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else ms_from_datetime(value)


@router.get("", response_model=Page[Delivery])
async def list_dead_letters(
    who: CallerDep,
    store: StoreDep,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
    endpoint_id: Annotated[str | None, Query(max_length=64)] = None,
    event_type: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status_code: Annotated[str | None, Query(max_length=8, description="500, a class (5xx), or none")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Delivery]:
    scope = await scope_of(who, store, tenant_id)
    f = DeadFilter(endpoint_id, event_type, _ms(since), _ms(until), status_code)
    return await store.deliveries.list_dead(scope, f, limit, cursor)


@router.post("/replay", status_code=202, response_model=ReplayResult, responses=responses(413, 415))
async def replay(
    body: ReplayRequest,
    who: CallerDep,
    store: StoreDep,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> ReplayResult:
    scope = await scope_of(who, store, tenant_id)
    f = DeadFilter(body.endpoint_id, body.event_type, _ms(body.since), _ms(body.until), body.status_code)
    return await store.deliveries.replay(
        scope, f, body.ids, dry_run=body.dry_run, rate_per_s=body.rate_per_s, now_ms=now_ms()
    )
