from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CallerDep, StoreDep
from api.errors import responses
from api.routes.dead_letters import scope_of
from webhooks.models import Page, Replay
from webhooks.timefmt import now_ms

router = APIRouter(prefix="/v1/replays", tags=["replays"], responses=responses(401, 404, 422, 503))

TenantQuery = Annotated[str | None, Query(max_length=64)]


@router.get("", response_model=Page[Replay])
async def list_replays(
    who: CallerDep,
    store: StoreDep,
    tenant_id: TenantQuery = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Replay]:
    """Newest first, with each replay's progress (admin without ``tenant_id``: every replay)."""
    return await store.deliveries.list_replays(await scope_of(who, store, tenant_id), limit, cursor)


@router.get("/{replay_id}", response_model=Replay)
async def get_replay(
    replay_id: str, who: CallerDep, store: StoreDep, tenant_id: TenantQuery = None
) -> Replay:
    """``matched``, ``done`` (settled again), ``remaining``, ``state``: running, done or cancelled."""
    return await store.deliveries.get_replay(await scope_of(who, store, tenant_id), replay_id)


@router.delete("/{replay_id}", response_model=Replay)
async def cancel_replay(
    replay_id: str, who: CallerDep, store: StoreDep, tenant_id: TenantQuery = None
) -> Replay:
    """Call it off: what has not gone out yet goes back to the dead letters; in-flight attempts finish."""
    return await store.deliveries.cancel_replay(await scope_of(who, store, tenant_id), replay_id, now_ms())
