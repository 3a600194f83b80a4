"""The web console and tenant portal, served by the API itself under ``/console``.

Server-rendered pages (Jinja2, autoescaped) over the same :class:`webhooks.stores.store.Store`
methods as the JSON API; one small local script; no build step, no external asset.
See :mod:`api.console.web` for sessions, CSRF and the security headers.
"""

import importlib.resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from api.console import access, dead_pages, endpoint_pages, event_pages
from api.console.web import BASE, NO_FRAMES, ConsoleConfig, ConsoleRoute
from api.routes import portal_links
from webhooks import errors

_STATIC = importlib.resources.files("api.console").joinpath("static")
_TYPES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
static = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)


@static.get("/static/{name}")
async def asset(name: str) -> Response:
    if name not in _TYPES:
        raise errors.NotFound("no such file")
    body = _STATIC.joinpath(name).read_bytes()
    return Response(body, media_type=_TYPES[name], headers={"Cache-Control": "public, max-age=300"})


@static.get("/{path:path}")
async def no_such_page(path: str) -> Response:
    raise errors.NotFound("no such page in the console")


def mount(app: FastAPI, frame_ancestors: str = NO_FRAMES) -> None:
    """Serve the console on ``app``, and the portal-link route of the JSON API."""
    app.state.console_config = ConsoleConfig(frame_ancestors)
    for router in (access.router, endpoint_pages.router, event_pages.router, dead_pages.router, static):
        app.include_router(router)  # `static` last: its catch-all answers the console's own 404 page
    app.include_router(portal_links.router)
