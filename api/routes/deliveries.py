from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import CallerDep, StoreDep, TenantDep
from api.errors import responses
from api.routes.dead_letters import scope_of
from webhooks.models import Delivery, DeliveryDetail, DeliveryStatus, Page
from webhooks.timefmt import now_ms

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"], responses=responses(401, 404, 422, 503))


@router.get("", response_model=Page[Delivery])
async def list_deliveries(
    tenant: TenantDep,
    store: StoreDep,
    event_id: Annotated[str | None, Query(max_length=256)] = None,
    endpoint_id: Annotated[str | None, Query(max_length=64)] = None,
    status: DeliveryStatus | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Delivery]:
    return await store.deliveries.list_deliveries(
        tenant, event_id=event_id, endpoint_id=endpoint_id, status=status, limit=limit, cursor=cursor
    )


@router.get("/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(
    delivery_id: str,
    who: CallerDep,
    store: StoreDep,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> DeliveryDetail:
    """A tenant reads its own; the admin token without ``tenant_id`` finds it in whichever
    tenant holds it (the operator's ``webhooks dlq show``)."""
    return await store.deliveries.get_delivery(await scope_of(who, store, tenant_id), delivery_id)


@router.post("/{delivery_id}/retry", status_code=202, response_model=DeliveryDetail, responses=responses(409))
async def retry_delivery(delivery_id: str, tenant: TenantDep, store: StoreDep) -> JSONResponse:
    detail = await store.deliveries.retry_delivery(tenant, delivery_id, now_ms())
    return JSONResponse(detail.model_dump(mode="json"), status_code=202)
