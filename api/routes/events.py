"""Reading events: ``GET /v1/events`` and ``GET /v1/events/{id}``.

Events are created by ``POST /v1/events`` and ``POST /v1/events/batch``, which
:class:`api.ingest.FastIngest` serves in front of FastAPI and :mod:`api.ingest_schema` describes
in the OpenAPI document: FastAPI has no route for them.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StoreDep, TenantDep
from api.errors import responses
from webhooks.models import Event, Page
from webhooks.timefmt import ms_from_datetime

router = APIRouter(prefix="/v1/events", tags=["events"], responses=responses(401, 404, 422, 503))


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
