"""The event log, one event with its deliveries, and one delivery with its attempts."""

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from api.console import web, wire
from api.console.state import Kind, Session
from api.console.web import BASE, ConsoleRoute, Redirect
from webhooks import errors
from webhooks.models import DeliveryStatus, Event
from webhooks.stores.store import Store
from webhooks.timefmt import now_ms

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)
DELIVERIES_PER_PAGE = 100
ENDPOINT_NAMES = 200  # endpoints named in filters and tables (others show their id)
READ_CONCURRENCY = 16
UNSETTLED = {DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.RETRYING}
Str = Annotated[str | None, Query(max_length=256)]


async def endpoint_urls(store: Store, tenant_id: str) -> dict[str, str]:
    page = await store.endpoints.list_endpoints(tenant_id, ENDPOINT_NAMES, None)
    return {e.id: e.url for e in page.data}


EVENTS_PER_PAGE = 50


async def event_log(
    store: Store,
    tenant_id: str,
    *,
    event_type: str | None,
    status: DeliveryStatus | None,
    endpoint_id: str | None,
    cursor: str | None,
) -> tuple[list[Event], str | None]:
    """Events newest first. Filtered by event type alone, straight from the events index (events
    that matched no endpoint included); with a delivery filter, through one page of the tenant's
    deliveries: the events of the deliveries that pass the filters, each with all its deliveries."""
    if status is None and endpoint_id is None:
        events_page = await store.deliveries.list_events(
            tenant_id, event_type=event_type, limit=EVENTS_PER_PAGE, cursor=cursor
        )
        return events_page.data, events_page.next_cursor
    page = await store.deliveries.list_deliveries(
        tenant_id, endpoint_id=endpoint_id, status=status, limit=DELIVERIES_PER_PAGE, cursor=cursor
    )
    event_ids = list(
        dict.fromkeys(d.event_id for d in page.data if not event_type or d.event_type == event_type)
    )
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(event_id: str) -> Event | None:
        async with gate:
            try:
                return await store.deliveries.get_event(tenant_id, event_id)
            except errors.NotFound:  # expired since its delivery was listed
                return None

    found = await asyncio.gather(*(one(e) for e in event_ids))
    return [e for e in found if e is not None], page.next_cursor


def _status(value: str | None) -> DeliveryStatus | None:
    if not value:
        return None
    try:
        return DeliveryStatus(value)
    except ValueError:
        raise errors.Invalid("status: one of " + ", ".join(s.value for s in DeliveryStatus)) from None


@router.get("/events")
async def events(
    request: Request,
    event_type: Str = None,
    status: Str = None,
    endpoint_id: Str = None,
    event_id: Str = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    session = await web.signed_in(request)
    tenant, store = web.tenant_of(session), web.store(request)
    if event_id:
        raise Redirect(f"{BASE}/events/{event_id.strip()}")
    filters = {"event_type": event_type or "", "status": status or "", "endpoint_id": endpoint_id or ""}
    found, next_cursor = await event_log(
        store,
        tenant,
        event_type=event_type or None,
        status=_status(status),
        endpoint_id=endpoint_id or None,
        cursor=cursor,
    )
    return await web.page(
        request,
        "events.html",
        session,
        events=found,
        next_cursor=next_cursor,
        filters=filters,
        params={k: v for k, v in filters.items() if v},
        statuses=[s.value for s in DeliveryStatus],
        endpoint_urls=await endpoint_urls(store, tenant),
    )


def _acting_tenant(session: Session, tenant_id: str | None) -> str:
    """An operator may name any tenant (links from cross-tenant pages); a tenant is its own."""
    if session.kind == Kind.OPERATOR and tenant_id:
        return tenant_id
    return web.tenant_of(session)


@router.get("/events/{event_id}")
async def event_page(
    request: Request, event_id: str, tenant_id: Str = None, sent: Str = None
) -> HTMLResponse:
    session = await web.signed_in(request)
    tenant, store = _acting_tenant(session, tenant_id), web.store(request)
    event = await store.deliveries.get_event(tenant, event_id)
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def delivery(delivery_id: str) -> Any:
        async with gate:
            try:
                return await store.deliveries.get_delivery(tenant, delivery_id)
            except errors.NotFound:
                return None

    found = await asyncio.gather(*(delivery(d.id) for d in event.deliveries))
    rows = [d for d in found if d is not None]
    return await web.page(
        request,
        "event.html",
        session,
        event=event,
        deliveries=rows,
        payload=json.dumps(event.payload, indent=2, ensure_ascii=False),
        endpoint_urls=await endpoint_urls(store, tenant),
        live=any(d.status in UNSETTLED for d in rows),
        notice="Test event sent." if sent else None,
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_page(request: Request, delivery_id: str, retried: Str = None) -> HTMLResponse:
    session = await web.signed_in(request)
    store = web.store(request)
    scope = None if session.kind == Kind.OPERATOR else web.tenant_of(session)
    delivery = await store.deliveries.get_delivery(scope, delivery_id)
    try:
        endpoint = await store.endpoints.get_endpoint(delivery.tenant_id, delivery.endpoint_id)
    except errors.NotFound:
        endpoint = None
    custom = endpoint.headers if endpoint else {}
    headers = {a.number: wire.sent_headers(custom, delivery.event_id, a) for a in delivery.attempts}
    return await web.page(
        request,
        "delivery.html",
        session,
        delivery=delivery,
        attempts=delivery.attempts,
        endpoint=endpoint,
        headers=headers,
        live=delivery.status in UNSETTLED,
        notice="A new attempt is on its way." if retried else None,
    )


@router.post("/deliveries/{delivery_id}/retry")
async def retry(request: Request, delivery_id: str) -> Response:
    session = await web.signed_in(request)
    await web.posted(request, session)
    store = web.store(request)
    scope = None if session.kind == Kind.OPERATOR else web.tenant_of(session)
    delivery = await store.deliveries.get_delivery(scope, delivery_id)
    await store.deliveries.retry_delivery(delivery.tenant_id, delivery_id, now_ms())
    raise Redirect(f"{BASE}/deliveries/{delivery_id}?retried=1")
