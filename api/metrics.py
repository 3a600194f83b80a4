"""Counting the API's requests: ``webhooks_http_requests_total{route,method,status}``.

:class:`HttpMetrics` is an ASGI middleware inside the FastAPI app. ``route`` is the matched
route's template (Starlette puts the route in the scope while routing), so ids in paths never
become labels; a path that matches no route is counted as ``unmatched``. The ingest fast path
(:mod:`api.ingest`), which answers before FastAPI, counts its requests with :func:`count`.
"""

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhooks.runtime import metrics

UNMATCHED = "unmatched"

_children: dict[tuple[str, str, int], Counter] = {}


def count(route: str, method: str, status: int) -> None:
    """Add one answered request (children are cached: the labels are a small, fixed set)."""
    key = (route, method, status)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metrics.HTTP_REQUESTS.labels(route, method, str(status))
    child.inc()


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            count(getattr(route, "path", None) or UNMATCHED, scope["method"], status)
