"""Signing in and out, the operator's tenant picker, and opening a portal link."""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.console import web
from api.console.state import PORTAL_LINK_DEFAULT_S, Kind, LinkState
from api.console.web import BASE, ConsoleRoute, Redirect
from api.deps import app_state
from api.routes.portal_links import portal_url
from webhooks import errors
from webhooks.timefmt import now_ms

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)
LOGIN_TOKEN_MAX_AGE_S = 3600


def home_of(kind: Kind, tenant_id: str | None) -> str:
    return f"{BASE}/tenants" if kind == Kind.OPERATOR and tenant_id is None else f"{BASE}/endpoints"


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    session = await web.current(request)
    raise Redirect(f"{BASE}/login" if session is None else home_of(session.kind, session.tenant_id))


async def _login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = web.login_token(request)
    response = await web.page(request, "login.html", None, status=status, login_csrf=token, error=error)
    response.set_cookie(
        web.LOGIN_COOKIE,
        token,
        max_age=LOGIN_TOKEN_MAX_AGE_S,
        path=BASE,
        httponly=True,
        samesite="strict",
        secure=web.is_https(request),
    )
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    session = await web.current(request)
    if session is not None:
        raise Redirect(home_of(session.kind, session.tenant_id))
    return await _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await web.read_form(request)
    web.check_login_token(request, form)
    token, now, admin = form.get("token"), now_ms(), app_state(request).admin_token
    try:
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            session = await web.state(request).open_session(Kind.OPERATOR, None, now, credential=token)
        else:
            tenant_id = await web.store(request).auth.tenant_for(token, now)
            session = await web.state(request).open_session(Kind.KEY, tenant_id, now, credential=token)
    except errors.Unauthorized:
        return await _login_page(request, "That is neither the admin token nor a live API key.", 401)
    except errors.LimitExceeded as exc:
        return await _login_page(request, str(exc), 429)
    old = request.cookies.get(web.COOKIE)
    if old:
        await web.state(request).close_session(old)
    response = RedirectResponse(home_of(session.kind, session.tenant_id), status_code=303)
    web.set_session_cookie(request, response, session)
    response.delete_cookie(web.LOGIN_COOKIE, path=BASE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await web.signed_in(request)
    await web.posted(request, session)
    await web.state(request).close_session(session.cookie)
    response = RedirectResponse(f"{BASE}/login", status_code=303)
    web.clear_session_cookie(response)
    return response


# -- the operator's tenants ---------------------------------------------------------------------------


async def _tenants_page(request: Request, cursor: str | None = None, **extra: Any) -> HTMLResponse:
    session = await web.signed_in(request)
    web.operator_only(session)
    page = await web.store(request).tenants.list_tenants(50, cursor)
    context = {"created": None, "portal": None, **extra}
    return await web.page(
        request, "tenants.html", session, tenants=page.data, next_cursor=page.next_cursor, **context
    )


@router.get("/tenants")
async def tenants(
    request: Request, cursor: Annotated[str | None, Query(max_length=512)] = None
) -> HTMLResponse:
    return await _tenants_page(request, cursor)


@router.post("/tenants")
async def create_tenant(request: Request) -> HTMLResponse:
    session = await web.signed_in(request)
    web.operator_only(session)
    form = await web.posted(request, session)
    created = await web.store(request).tenants.create_tenant(form.get("name"), now_ms())
    return await _tenants_page(request, created=created)


@router.post("/tenants/pick")
async def pick_tenant(request: Request) -> Response:
    session = await web.signed_in(request)
    web.operator_only(session)
    form = await web.posted(request, session)
    tenant_id = form.get("tenant_id") or None
    if tenant_id is not None:
        await web.store(request).tenants.get_tenant(tenant_id)
    session = await web.state(request).pick_tenant(session, tenant_id)
    raise Redirect(home_of(session.kind, session.tenant_id) if tenant_id else f"{BASE}/dead-letters")


@router.post("/tenants/{tenant_id}/portal-link")
async def make_portal_link(request: Request, tenant_id: str) -> HTMLResponse:
    session = await web.signed_in(request)
    web.operator_only(session)
    await web.posted(request, session)
    tenant = await web.store(request).tenants.get_tenant(tenant_id)
    token, expires_ms = await web.state(request).create_portal_link(
        tenant_id, PORTAL_LINK_DEFAULT_S, now_ms()
    )
    portal = {"name": tenant.name, "url": portal_url(request, tenant_id, token), "expires_at": expires_ms}
    return await _tenants_page(request, portal=portal)


# -- portal links ----------------------------------------------------------------------------------


@router.get("/portal/{tenant_id}/{token}")
async def open_portal(request: Request, tenant_id: str, token: str) -> Response:
    """Consumes the link and signs its opener into that tenant's portal, once."""
    request.state.frame_ancestors = web.config(request).frame_ancestors  # its answer may sit in a frame
    opened = await web.state(request).use_portal_link(tenant_id, token)
    if opened == LinkState.USED:
        return web.plain_page(
            request,
            410,
            "This link was already used",
            "A portal link opens the portal once. Ask for a new one.",
        )
    if opened == LinkState.UNKNOWN:
        return web.plain_page(
            request,
            410,
            "This link has expired",
            "This portal link is no longer valid (links expire after a few minutes). Ask for a new one.",
        )
    session = await web.state(request).open_session(Kind.PORTAL, tenant_id, now_ms())
    old = request.cookies.get(web.COOKIE)
    if old:
        await web.state(request).close_session(old)
    response = RedirectResponse(f"{BASE}/endpoints", status_code=303)
    web.set_session_cookie(request, response, session)
    return response
