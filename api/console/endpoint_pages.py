"""Endpoints: list (with each one's health), create, edit, disable and enable, pause and resume,
show and rotate the secret, send a test event."""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from api.console import chart, web
from api.console.state import Session
from api.console.web import BASE, ConsoleRoute, Form, Redirect
from webhooks import errors
from webhooks.models import Endpoint
from webhooks.timefmt import now_ms

router = APIRouter(prefix=f"{BASE}/endpoints", route_class=ConsoleRoute, include_in_schema=False)
RECENT_DELIVERIES = 20
GRACE_CHOICES_S = {0, 3600, 86400}


def fields_of(form: Form) -> dict[str, Any]:
    """The endpoint fields a form carries, as the store takes them; :class:`Invalid` naming the field."""
    headers: dict[str, str] = {}
    for number, line in enumerate(form.get("headers").splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise errors.Invalid(f"headers: line {number} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    rate_text = form.get("rate_limit_per_s")
    try:
        rate = float(rate_text) if rate_text else None
    except ValueError:
        raise errors.Invalid("rate_limit_per_s: a number of deliveries per second, or empty") from None
    types = [t for t in re.split(r"[\s,]+", form.get("event_types")) if t]
    return {
        "url": form.get("url"),
        "description": form.get("description"),
        "event_types": types or None,
        "headers": headers,
        "rate_limit_per_s": rate,
        "disabled": form.get("disabled") == "1",
    }


def values_of(endpoint: Endpoint | None, form: Form | None = None) -> dict[str, Any]:
    """What the form's fields show: what was typed, else the endpoint's current values."""
    if form is not None:
        names = ("url", "description", "event_types", "headers", "rate_limit_per_s")
        return {**{n: form.get(n) for n in names}, "disabled": form.get("disabled") == "1"}
    if endpoint is None:
        return {
            "url": "",
            "description": "",
            "event_types": "",
            "headers": "",
            "rate_limit_per_s": "",
            "disabled": False,
        }
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": ", ".join(endpoint.event_types or []),
        "headers": "\n".join(f"{k}: {v}" for k, v in endpoint.headers.items()),
        "rate_limit_per_s": "" if endpoint.rate_limit_per_s is None else f"{endpoint.rate_limit_per_s:g}",
        "disabled": endpoint.disabled,
    }


@router.get("")
async def list_endpoints(
    request: Request, cursor: Annotated[str | None, Query(max_length=512)] = None
) -> HTMLResponse:
    session = await web.signed_in(request)
    page = await web.store(request).endpoints.list_endpoints(web.tenant_of(session), 50, cursor)
    return await web.page(
        request, "endpoints.html", session, endpoints=page.data, next_cursor=page.next_cursor
    )


async def _form_page(
    request: Request, session: Session, endpoint: Endpoint | None, form: Form | None = None, error: str = ""
) -> HTMLResponse:
    """The create (no ``endpoint``) or edit form; with ``form`` and ``error``, shown again as typed."""
    return await web.page(
        request,
        "endpoint_form.html",
        session,
        status=422 if error else 200,
        endpoint=endpoint,
        values=values_of(endpoint, form),
        error=error or None,
    )


@router.get("/new")
async def new_endpoint(request: Request) -> HTMLResponse:
    session = await web.signed_in(request)
    web.tenant_of(session)
    return await _form_page(request, session, None)


@router.post("")
async def create_endpoint(request: Request) -> Response:
    session = await web.signed_in(request)
    form = await web.posted(request, session)
    try:
        created = await web.store(request).endpoints.create_endpoint(
            web.tenant_of(session), now_ms=now_ms(), **fields_of(form)
        )
    except errors.Invalid as exc:
        return await _form_page(request, session, None, form, str(exc))
    raise Redirect(f"{BASE}/endpoints/{created.id}")


async def _detail(request: Request, session: Session, endpoint_id: str, **extra: Any) -> HTMLResponse:
    store, tenant, now = web.store(request), web.tenant_of(session), now_ms()
    endpoint = await store.endpoints.get_endpoint(tenant, endpoint_id)
    recent = await store.deliveries.list_deliveries(tenant, endpoint_id=endpoint_id, limit=RECENT_DELIVERIES)
    stats = await chart.endpoint_hour(store, tenant, endpoint_id, now)
    context: dict[str, Any] = {"notice": None, "secret": None, "secret_label": "", **extra}
    return await web.page(
        request,
        "endpoint.html",
        session,
        endpoint=endpoint,
        deliveries=recent.data,
        stats=stats,
        g=chart.geometry(stats),
        **context,
    )


DONE = {
    "disabled": "Disabled: it receives nothing until enabled.",
    "enabled": "Enabled.",
    "paused": "Paused: nothing is sent until resumed; its deliveries wait, new events still queue.",
    "resumed": "Resumed: what waited is being sent.",
}


@router.get("/{endpoint_id}")
async def endpoint_page(
    request: Request, endpoint_id: str, done: Annotated[str | None, Query(max_length=20)] = None
) -> HTMLResponse:
    return await _detail(request, await web.signed_in(request), endpoint_id, notice=DONE.get(done or ""))


@router.get("/{endpoint_id}/edit")
async def edit_page(request: Request, endpoint_id: str) -> HTMLResponse:
    session = await web.signed_in(request)
    return await _form_page(
        request, session, await web.store(request).endpoints.get_endpoint(web.tenant_of(session), endpoint_id)
    )


@router.post("/{endpoint_id}")
async def update_endpoint(request: Request, endpoint_id: str) -> Response:
    session = await web.signed_in(request)
    form = await web.posted(request, session)
    store, tenant = web.store(request), web.tenant_of(session)
    try:
        await store.endpoints.update_endpoint(tenant, endpoint_id, fields_of(form), now_ms())
    except errors.Invalid as exc:
        return await _form_page(
            request, session, await store.endpoints.get_endpoint(tenant, endpoint_id), form, str(exc)
        )
    raise Redirect(f"{BASE}/endpoints/{endpoint_id}")


async def _switch(request: Request, endpoint_id: str, field: str, on: bool, done: str) -> Response:
    session = await web.signed_in(request)
    await web.posted(request, session)
    changes = {field: on}
    await web.store(request).endpoints.update_endpoint(web.tenant_of(session), endpoint_id, changes, now_ms())
    raise Redirect(f"{BASE}/endpoints/{endpoint_id}?done={done}")


@router.post("/{endpoint_id}/disable")
async def disable(request: Request, endpoint_id: str) -> Response:
    return await _switch(request, endpoint_id, "disabled", True, "disabled")


@router.post("/{endpoint_id}/enable")
async def enable(request: Request, endpoint_id: str) -> Response:
    return await _switch(request, endpoint_id, "disabled", False, "enabled")


@router.post("/{endpoint_id}/pause")
async def pause(request: Request, endpoint_id: str) -> Response:
    return await _switch(request, endpoint_id, "paused", True, "paused")


@router.post("/{endpoint_id}/resume")
async def resume(request: Request, endpoint_id: str) -> Response:
    return await _switch(request, endpoint_id, "paused", False, "resumed")


@router.post("/{endpoint_id}/secret")
async def show_secret(request: Request, endpoint_id: str) -> HTMLResponse:
    session = await web.signed_in(request)
    await web.posted(request, session)
    key = await web.store(request).endpoints.endpoint_secret(web.tenant_of(session), endpoint_id)
    if key.secret is None:  # an Ed25519 endpoint: receivers verify with its public key
        return await _detail(request, session, endpoint_id, secret=key.public_key, secret_label="Public key")
    return await _detail(request, session, endpoint_id, secret=key.secret, secret_label="Signing secret")


@router.post("/{endpoint_id}/rotate")
async def rotate_secret(request: Request, endpoint_id: str) -> HTMLResponse:
    session = await web.signed_in(request)
    form = await web.posted(request, session)
    grace_text = form.get("grace_period_s", "86400")
    if not grace_text.isdigit() or int(grace_text) not in GRACE_CHOICES_S:
        raise errors.Invalid("grace_period_s: one of the offered choices")
    key = await web.store(request).endpoints.rotate_secret(
        web.tenant_of(session), endpoint_id, int(grace_text), now_ms()
    )
    secret = key.secret if key.secret is not None else key.public_key
    hours = int(grace_text) // 3600
    notice = (
        f"Rotated: the old secret also signs for {hours} hour{'s' if hours != 1 else ''}."
        if hours
        else "Rotated: the old secret no longer signs."
    )
    return await _detail(
        request,
        session,
        endpoint_id,
        secret=secret,
        secret_label="New signing secret" if key.secret is not None else "New public key",
        notice=notice,
    )


@router.post("/{endpoint_id}/test")
async def send_test(request: Request, endpoint_id: str) -> Response:
    session = await web.signed_in(request)
    await web.posted(request, session)
    event = await web.store(request).send_test_event(web.tenant_of(session), endpoint_id, now_ms())
    raise Redirect(f"{BASE}/events/{event.id}?sent=1")
