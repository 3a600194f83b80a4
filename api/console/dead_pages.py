"""Dead letters (filters, select, replay) and the progress of the replays started here.

A replay goes through :meth:`Store.replay` with the ids it names, the same call
as ``POST /v1/dead-letters/replay``. "Replay all matching" collects the ids of
at most :data:`MAX_REPLAY` matching dead letters first (newest first; pressing
again replays the next ones, as replayed ones leave the dead letters), so that
the console knows which deliveries to follow: their statuses, read through the
store, are the replay's progress.
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from api.console import web
from api.console.event_pages import READ_CONCURRENCY, UNSETTLED, Str, endpoint_urls
from api.console.state import MAX_TRACKED, Kind, Session, TrackedReplay
from api.console.web import BASE, ConsoleRoute, Redirect
from webhooks import errors
from webhooks.models import Delivery, DeliveryStatus, ReplayState
from webhooks.stores.store import DeadFilter, Store
from webhooks.timefmt import now_ms

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)
PAGE = 50
MAX_REPLAY = MAX_TRACKED


def scope_of(session: Session) -> str | None:
    """The tenant a page acts for; None: an operator who has not picked one sees every tenant."""
    return session.tenant_id if session.kind == Kind.OPERATOR else web.tenant_of(session)


def _ms(value: str, field: str) -> int | None:
    """Unix ms of a ``datetime-local`` value (taken as UTC), None when empty."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise errors.Invalid(f"{field}: a date and time like 2026-01-31T13:45") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def dead_filter(values: dict[str, str]) -> DeadFilter:
    return DeadFilter(
        values.get("endpoint_id") or None,
        values.get("event_type") or None,
        _ms(values.get("since", ""), "since"),
        _ms(values.get("until", ""), "until"),
    )


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    endpoint_id: Str = None,
    event_type: Str = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    session = await web.signed_in(request)
    scope, store = scope_of(session), web.store(request)
    filters = {
        "endpoint_id": endpoint_id or "",
        "event_type": event_type or "",
        "since": since or "",
        "until": until or "",
    }
    page = await store.deliveries.list_dead(scope, dead_filter(filters), PAGE, cursor)
    return await web.page(
        request,
        "dead_letters.html",
        session,
        dead=page.data,
        next_cursor=page.next_cursor,
        filters=filters,
        params={k: v for k, v in filters.items() if v},
        endpoint_urls=await endpoint_urls(store, scope) if scope else {},
        show_tenant=scope is None,
        notice=None,
    )


async def _matching(store: Store, scope: str | None, f: DeadFilter) -> list[str]:
    ids: list[str] = []
    cursor = None
    while len(ids) < MAX_REPLAY:
        page = await store.deliveries.list_dead(scope, f, min(1000, MAX_REPLAY - len(ids)), cursor)
        ids += [d.id for d in page.data]
        cursor = page.next_cursor
        if cursor is None:
            break
    return ids


@router.post("/dead-letters/replay")
async def replay(request: Request) -> Response:
    session = await web.signed_in(request)
    form = await web.posted(request, session)
    scope, store, now = scope_of(session), web.store(request), now_ms()
    f = dead_filter({name: form.get(f"f_{name}") for name in ("endpoint_id", "event_type", "since", "until")})
    if form.get("what") == "matching":
        ids = await _matching(store, scope, f)
    else:
        ids = form.getlist("ids")[:MAX_REPLAY]
    if not ids:
        raise errors.Invalid("ids: select at least one dead letter to replay")
    result = await store.deliveries.replay(
        scope, DeadFilter(), ids, dry_run=False, rate_per_s=None, now_ms=now
    )
    if result.replay_id is None:  # only a dry run has none
        raise errors.Conflict("the replay did not start")
    await web.state(request).remember_replay(scope, result.replay_id, ids, result.matched, now)
    raise Redirect(f"{BASE}/replays/{result.replay_id}")


@router.get("/replays")
async def replays(
    request: Request, cursor: Annotated[str | None, Query(max_length=512)] = None
) -> HTMLResponse:
    """Every replay of the scope, whatever started it (console, API, CLI, a recover), newest first."""
    session = await web.signed_in(request)
    scope = scope_of(session)
    page = await web.store(request).deliveries.list_replays(scope, 50, cursor)
    from_console = {r.id for r in await web.state(request).replays(scope)}
    return await web.page(
        request,
        "replays.html",
        session,
        replays=page.data,
        from_console=from_console,
        next_cursor=page.next_cursor,
    )


@dataclass(frozen=True, slots=True)
class Progress:
    total: int
    succeeded: int
    dead: int
    active: int
    gone: int  # expired since (or never requeued: they were not dead any more)

    @property
    def settled(self) -> int:
        return self.succeeded + self.dead + self.gone


async def progress(
    store: Store, scope: str | None, tracked: TrackedReplay
) -> tuple[Progress, list[Delivery]]:
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(delivery_id: str) -> Delivery | None:
        async with gate:
            try:
                return await store.deliveries.get_delivery(scope, delivery_id)
            except errors.NotFound:
                return None

    found = await asyncio.gather(*(one(i) for i in tracked.delivery_ids))
    rows = [d for d in found if d is not None]
    count = {s: sum(1 for d in rows if d.status == s) for s in DeliveryStatus}
    return (
        Progress(
            len(found),
            count[DeliveryStatus.SUCCEEDED],
            count[DeliveryStatus.DEAD],
            sum(1 for d in rows if d.status in UNSETTLED),
            len(found) - len(rows),
        ),
        rows,
    )


@router.get("/replays/{replay_id}")
async def replay_page(request: Request, replay_id: str) -> HTMLResponse:
    session = await web.signed_in(request)
    scope = scope_of(session)
    tracked = await web.state(request).replay(scope, replay_id)
    if tracked is None:  # started elsewhere (API, CLI): its progress, without the deliveries' rows
        r = await web.store(request).deliveries.get_replay(scope, replay_id)
        tracked = TrackedReplay(
            r.id, int(datetime.fromisoformat(r.created_at).timestamp() * 1000), r.matched, [], False
        )
        p = Progress(r.matched, r.succeeded, r.dead, r.remaining, r.done - r.succeeded - r.dead)
        rows: list[Delivery] = []
    else:
        p, rows = await progress(web.store(request), scope, tracked)
        record = await web.store(request).deliveries.get_replay(scope, replay_id)
        if record.state in (ReplayState.MATCHING, ReplayState.REQUEUEING):
            # Its job has not requeued them all yet: a delivery still dead waits for it, not dead again.
            p = Progress(p.total, p.succeeded, 0, p.active + p.dead, p.gone)
    return await web.page(
        request,
        "replay.html",
        session,
        replay=tracked,
        p=p,
        rows=rows[:100],
        finished=p.active == 0,
        notice=None,
    )
