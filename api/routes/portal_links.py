"""``POST /v1/tenants/{id}/portal-links``: a one-time link into a tenant's portal (admin only)."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.console.state import PORTAL_LINK_DEFAULT_S, PORTAL_LINK_MAX_S, ConsoleState
from api.deps import AdminDep, StoreDep
from api.errors import responses
from webhooks.timefmt import iso_from_ms, now_ms

CONSOLE = "/console"

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses=responses(401, 403, 404, 422, 503))


def portal_url(request: Request, tenant_id: str, token: str) -> str:
    """The link, on the scheme and host this request reached the API by (the console's own route)."""
    return f"{str(request.base_url).rstrip('/')}{CONSOLE}/portal/{tenant_id}/{token}"


class PortalLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_s: int = Field(PORTAL_LINK_DEFAULT_S, ge=1, le=PORTAL_LINK_MAX_S)


class PortalLink(BaseModel):
    url: str  # opens the tenant's portal once, signing the opener in with a session cookie
    expires_at: str


@router.post(
    "/{tenant_id}/portal-links", status_code=201, response_model=PortalLink, responses=responses(413, 415)
)
async def create_portal_link(
    tenant_id: str, request: Request, _: AdminDep, store: StoreDep, body: PortalLinkCreate | None = None
) -> PortalLink:
    """A one-time link that signs its opener into this tenant's portal, and nothing else.

    The link works once (a second opening answers a page saying so) and until
    ``expires_at``. Embed it in an iframe when ``WEBHOOKS_PORTAL_FRAME_ANCESTORS``
    allows the embedding site.
    """
    await store.tenants.get_tenant(tenant_id)
    expires_in_s = body.expires_in_s if body else PORTAL_LINK_DEFAULT_S
    token, expires_ms = await ConsoleState(store.r).create_portal_link(tenant_id, expires_in_s, now_ms())
    return PortalLink(url=portal_url(request, tenant_id, token), expires_at=iso_from_ms(expires_ms) or "")
