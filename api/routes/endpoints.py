from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from api.deps import CallerDep, StoreDep, TenantDep, resolve_tenant
from api.errors import responses
from api.schemas import EndpointCreate, EndpointUpdate, RecoverRequest, SecretRotate
from webhooks.models import Endpoint, EndpointWithSecret, Page, ReplayResult, Secret
from webhooks.timefmt import ms_from_datetime, now_ms

router = APIRouter(prefix="/v1/endpoints", tags=["endpoints"], responses=responses(401, 404, 422, 503))


@router.post("", status_code=201, response_model=EndpointWithSecret, responses=responses(413, 415, 429))
async def create_endpoint(
    body: EndpointCreate,
    who: CallerDep,
    store: StoreDep,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EndpointWithSecret:
    tenant = await resolve_tenant(who, store, tenant_id or body.tenant_id)
    return await store.endpoints.create_endpoint(
        tenant,
        url=body.url,
        now_ms=now_ms(),
        description=body.description,
        event_types=body.event_types,
        headers=body.headers,
        rate_limit_per_s=body.rate_limit_per_s,
        max_in_flight=body.max_in_flight,
        ordering=body.ordering,
        disabled=body.disabled,
        signing=body.signing,
    )


@router.get("", response_model=Page[Endpoint])
async def list_endpoints(
    tenant: TenantDep,
    store: StoreDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Endpoint]:
    return await store.endpoints.list_endpoints(tenant, limit, cursor)


@router.get("/{endpoint_id}", response_model=Endpoint)
async def get_endpoint(endpoint_id: str, tenant: TenantDep, store: StoreDep) -> Endpoint:
    return await store.endpoints.get_endpoint(tenant, endpoint_id)


@router.patch("/{endpoint_id}", response_model=Endpoint, responses=responses(413, 415))
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, tenant: TenantDep, store: StoreDep
) -> Endpoint:
    await store.endpoints.update_endpoint(tenant, endpoint_id, body.model_dump(exclude_unset=True), now_ms())
    return await store.endpoints.get_endpoint(tenant, endpoint_id)  # with its health after the change


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, tenant: TenantDep, store: StoreDep) -> Response:
    await store.endpoints.delete_endpoint(tenant, endpoint_id)
    return Response(status_code=204)


@router.get("/{endpoint_id}/secret", response_model=Secret)
async def get_secret(endpoint_id: str, tenant: TenantDep, store: StoreDep) -> Secret:
    return await store.endpoints.endpoint_secret(tenant, endpoint_id)


@router.post("/{endpoint_id}/secret/rotate", response_model=Secret, responses=responses(413, 415))
async def rotate_secret(
    endpoint_id: str, tenant: TenantDep, store: StoreDep, body: SecretRotate | None = None
) -> Secret:
    grace = body.grace_period_s if body else 86400
    return await store.endpoints.rotate_secret(
        tenant, endpoint_id, grace, now_ms(), body.signing if body else None
    )


@router.post(
    "/{endpoint_id}/recover", status_code=202, response_model=ReplayResult, responses=responses(413, 415)
)
async def recover(endpoint_id: str, body: RecoverRequest, tenant: TenantDep, store: StoreDep) -> JSONResponse:
    """Re-send what died at this endpoint between ``since`` and ``until`` (default: now): a replay."""
    result = await store.deliveries.recover(
        tenant,
        endpoint_id,
        ms_from_datetime(body.since),
        None if body.until is None else ms_from_datetime(body.until),
        now_ms(),
    )
    return JSONResponse(result.model_dump(mode="json"), status_code=202)
