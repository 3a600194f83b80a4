from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query

from api.deps import StoreDep, TenantDep
from api.errors import responses
from api.schemas import EventBatch, EventCreate
from webhooks.errors import Invalid
from webhooks.intake.ingest import EventIn
from webhooks.models import Event, Page
from webhooks.timefmt import ms_from_datetime, now_ms

router = APIRouter(prefix="/v1/events", tags=["events"], responses=responses(401, 404, 422, 503))


@router.post("", status_code=202, response_model=Event, responses=responses(413, 415))
async def create_event(
    body: EventCreate,
    tenant: TenantDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> Event:
    (event,) = await store.ingest(
        tenant, [EventIn(body.event_type, body.payload, body.id, idempotency_key)], now_ms()
    )
    return event


@router.post("/batch", status_code=202, response_model=list[Event], responses=responses(413, 415))
async def create_events(body: EventBatch, tenant: TenantDep, store: StoreDep) -> list[Event]:
    if len(body.events) > store.policy.max_batch:
        raise Invalid(
            f"events: a batch holds at most {store.policy.max_batch} events (got {len(body.events)})"
        )
    return await store.ingest(
        tenant, [EventIn(e.event_type, e.payload, e.id) for e in body.events], now_ms(), batch=True
    )


@router.get("", response_model=Page[Event])
async def list_events(
    tenant: TenantDep,
    store: StoreDep,
    event_type: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Event]:
    """Newest first; ``since``/``until`` bound the events' creation time."""
    return await store.deliveries.list_events(
        tenant,
        event_type=event_type,
        since_ms=None if since is None else ms_from_datetime(since),
        until_ms=None if until is None else ms_from_datetime(until),
        limit=limit,
        cursor=cursor,
    )


@router.get("/{event_id}", response_model=Event)
async def get_event(event_id: str, tenant: TenantDep, store: StoreDep) -> Event:
    return await store.deliveries.get_event(tenant, event_id)
