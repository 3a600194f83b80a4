"""The console's plumbing: templates, security headers, the session cookie, CSRF, errors as pages.

Every console route uses :class:`ConsoleRoute`, which answers domain errors with
an HTML page (never JSON, never a 500 for bad input) and puts the security
headers on every answer: a Content-Security-Policy with no inline script or
style (``script-src 'self'``: the only script is ``static/console.js``),
``frame-ancestors 'none'`` except on a portal session's pages, which get
``WEBHOOKS_PORTAL_FRAME_ANCESTORS``, ``no-store`` caching, no referrer (a portal
link's token must not leak), ``nosniff``.

The session cookie (:data:`COOKIE`, path ``/console``) is HttpOnly and holds a
random session id only (:mod:`api.console.state`). SameSite is ``Strict``
for an operator's session (signing in happens on the console's own page),
``Lax`` for a tenant's (a portal link is opened from the SaaS's own site, a
cross-site navigation that a Strict cookie would not follow), and ``None``
with ``Secure`` and ``Partitioned`` for a portal session when embedding is
allowed, since a cookie in a third-party iframe is sent only then. ``Secure``
is also set whenever the request came over HTTPS.

Every POST carries the session's CSRF token (hidden field ``csrf``), compared
in constant time; the sign-in form, before any session exists, carries a token
that must match a short-lived cookie (double submit). A POST whose ``Origin``
is another site is refused as well.
"""

import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jinja2
import redis
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from api import errors as api_errors
from api.console.state import ConsoleState, Kind, Session
from api.deps import app_state
from webhooks import errors
from webhooks.stores.store import Store
from webhooks.timefmt import iso_from_ms, now_ms

log = logging.getLogger("webhooks.console")

BASE = "/console"
COOKIE = "wh_console"
LOGIN_COOKIE = "wh_console_login"
FORM_LIMIT = 256 * 1024
NO_FRAMES = "'none'"

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("api.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: str | int | None) -> str:
    """``2026-11-29 01:42:18 UTC`` for an ISO timestamp or Unix milliseconds."""
    if value is None or value == "":
        return "—"
    text = iso_from_ms(value) if isinstance(value, int) else value
    return (text or "").replace("T", " ").split(".")[0].rstrip("Z") + " UTC"


templates.filters["when"] = _when


@dataclass(frozen=True)
class ConsoleConfig:
    frame_ancestors: str = NO_FRAMES

    @property
    def embeddable(self) -> bool:
        return self.frame_ancestors != NO_FRAMES


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class CsrfRefused(Exception):
    pass


def config(request: Request) -> ConsoleConfig:
    found: ConsoleConfig = request.app.state.console_config
    return found


def store(request: Request) -> Store:
    return app_state(request).store


def state(request: Request) -> ConsoleState:
    found: ConsoleState | None = getattr(request.app.state, "console_state", None)
    if found is None:
        found = request.app.state.console_state = ConsoleState(store(request).r)
    return found


def is_https(request: Request) -> bool:
    # X-Forwarded-Proto only ever adds Secure: a forged one harms nobody but its sender.
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


# -- sessions -------------------------------------------------------------------------------------


async def current(request: Request) -> Session | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    found = await state(request).session(cookie, now_ms(), app_state(request).admin_token)
    if found is not None and found.kind == Kind.PORTAL:
        request.state.frame_ancestors = config(request).frame_ancestors
    request.state.console_session = found  # error pages keep the navigation
    return found


async def signed_in(request: Request) -> Session:
    """The caller's session, or a redirect to the sign-in page."""
    found = await current(request)
    if found is None:
        raise Redirect(f"{BASE}/login")
    return found


def tenant_of(session: Session) -> str:
    """The tenant the session acts for; an operator who has not picked one is sent to pick."""
    if session.tenant_id is None:
        raise Redirect(f"{BASE}/tenants")
    return session.tenant_id


def operator_only(session: Session) -> None:
    if session.kind != Kind.OPERATOR:
        raise errors.NotFound("no such page")  # a tenant learns nothing of operator pages


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    embedded = session.kind == Kind.PORTAL and config(request).embeddable
    samesite: Literal["lax", "strict", "none"] = (
        "none" if embedded else ("strict" if session.kind == Kind.OPERATOR else "lax")
    )
    response.set_cookie(
        COOKIE,
        session.cookie,
        path=BASE,
        httponly=True,
        secure=embedded or is_https(request),
        samesite=samesite,
    )
    if embedded:  # CHIPS: kept per embedding site, so it survives third-party cookie blocking
        name, value = response.raw_headers[-1]  # Starlette's own flag needs Python 3.14
        response.raw_headers[-1] = (name, value + b"; Partitioned")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=BASE)


# -- forms and CSRF -------------------------------------------------------------------------------


class Form:
    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def getlist(self, name: str) -> list[str]:
        return [v for v in self.fields.get(name, []) if v]


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise errors.Invalid("the form is too large")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise CsrfRefused()
    try:
        return Form(parse_qs(body.decode(), keep_blank_values=True, max_num_fields=2000))
    except (UnicodeDecodeError, ValueError):
        raise errors.Invalid("the form could not be read") from None


async def posted(request: Request, session: Session) -> Form:
    """The POSTed form, refused unless it carries this session's CSRF token."""
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf").encode(), session.csrf.encode()):
        raise CsrfRefused()
    return form


def login_token(request: Request) -> str:
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def check_login_token(request: Request, form: Form) -> None:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(form.get("login_csrf").encode(), cookie.encode()):
        raise CsrfRefused()


# -- pages ----------------------------------------------------------------------------------------


async def page(
    request: Request, name: str, session: Session | None, *, status: int = 200, **context: Any
) -> HTMLResponse:
    tenant_name = None
    if session is not None and session.tenant_id is not None:
        try:
            tenant_name = (await store(request).tenants.get_tenant(session.tenant_id)).name
        except errors.NotFound:
            tenant_name = "(deleted tenant)"
    query = request.url.query
    html = templates.get_template(name).render(
        base=BASE,
        session=session,
        tenant_name=tenant_name,
        request_path=request.url.path,
        request_url=request.url.path + (f"?{query}" if query else ""),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def plain_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    html = templates.get_template("message.html").render(
        base=BASE,
        session=getattr(request.state, "console_session", None),
        tenant_name=None,
        request_path=request.url.path,
        title=title,
        message=message,
    )
    return HTMLResponse(html, status_code=status)


def secure_headers(request: Request, response: Response) -> None:
    frame = getattr(request.state, "frame_ancestors", NO_FRAMES)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame}"
    )
    if frame == NO_FRAMES:
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")


_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
    413: "Too large",
    422: "Check the input",
    429: "Slow down",
    503: "Try again shortly",  # Redis unavailable or full, or the endpoints kept changing
}


class ConsoleRoute(APIRoute):
    """Answers errors with pages and sets the security headers on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            response: Response
            try:
                response = await handler(request)
            except Redirect as to:
                response = RedirectResponse(to.url, status_code=303)
            except CsrfRefused:
                response = plain_page(
                    request,
                    403,
                    "Form refused",
                    "This form did not carry a valid token (it may be from an old page or another "
                    "site). Reload the page and try again.",
                )
            except errors.WebhooksError as exc:
                status = api_errors.domain_error_response(exc).status_code
                response = plain_page(request, status, _TITLES.get(status, "Error"), str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()[:3]
                )
                response = plain_page(request, 422, _TITLES[422], problems or "the request is not valid")
            except redis.RedisError as exc:
                log.error("Redis error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
                response = plain_page(request, 503, _TITLES[503], "The store is unavailable; try again.")
            except Exception:
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                response = plain_page(
                    request, 500, "Something went wrong", "An internal error; it is logged."
                )
            secure_headers(request, response)
            return response

        return run
