from typing import Annotated

from fastapi import APIRouter, Header

from api.deps import StoreDep, TenantDep, now_ms
from api.errors import responses
from api.schemas import EventBatch, EventCreate
from webhooks.errors import Invalid
from webhooks.ingest import EventIn
from webhooks.models import Event

router = APIRouter(prefix="/v1/events", tags=["events"], responses=responses(401, 404, 422, 503))


@router.post("", status_code=202, response_model=Event, responses=responses(413))
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


@router.post("/batch", status_code=202, response_model=list[Event], responses=responses(413))
async def create_events(body: EventBatch, tenant: TenantDep, store: StoreDep) -> list[Event]:
    if len(body.events) > store.policy.max_batch:
        raise Invalid(
            f"events: a batch holds at most {store.policy.max_batch} events (got {len(body.events)})"
        )
    return await store.ingest(
        tenant, [EventIn(e.event_type, e.payload, e.id) for e in body.events], now_ms(), batch=True
    )


@router.get("/{event_id}", response_model=Event)
async def get_event(event_id: str, tenant: TenantDep, store: StoreDep) -> Event:
    return await store.get_event(tenant, event_id)
