"""The FastAPI application: routes, error mapping, request-size limit, lifespan of the Redis client."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import api_docs, console, errors, format_watch, ingest_schema
from api.acked import AcknowledgedWrites
from api.deps import AppState
from api.ingest import FastIngest
from api.jsonbody import JsonBodies
from api.metrics import HttpMetrics
from api.routes import dead_letters, deliveries, endpoints, event_types, events, health, replays, tenants
from webhooks import __version__
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget, async_client, rq_client
from webhooks.stores.jobqueue import OperationQueue
from webhooks.stores.policy import Policy
from webhooks.stores.store import Store


@dataclass(frozen=True)
class ApiConfig:
    target: RedisTarget
    box: SecretBox
    policy: Policy
    admin_token: str | None
    portal_frame_ancestors: str = "'none'"  # WEBHOOKS_PORTAL_FRAME_ANCESTORS (api/console)
    format_watch_pid: int | None = None  # SIGTERMed when the data format turns newer (api/format_watch.py)


class BodyLimit:
    """Refuses request bodies above the limit with 413 before FastAPI parses them.

    The limit is a single event's: ``max_payload_bytes`` of payload plus its envelope, far more
    than any other route's body needs. Event ingest (both routes) never gets here:
    :class:`api.ingest.FastIngest` answers it in front, with its own limits.
    """

    def __init__(self, app: ASGIApp, single_limit: int) -> None:
        self.app = app
        self.single_limit = single_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.single_limit
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await errors.error_response(
                        413, "payload_too_large", f"the request body is larger than {limit} bytes"
                    )(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Body without a Content-Length (chunked): refused once it grows past the limit.
                    # FastAPI re-raises HTTPException from body reading; the handler answers 413.
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(config: ApiConfig) -> FastIngest:
    """The ASGI application: the event-ingest fast path in front of the FastAPI app (``.app``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = async_client(config.target)
        rq = rq_client(config.target)  # where the operators' jobs are enqueued (replays, deletions)
        store = Store(r, config.box, config.policy, OperationQueue(rq))
        app.state.webhooks = AppState(store, config.admin_token)
        watcher = None
        if config.format_watch_pid is not None:
            watcher = asyncio.create_task(format_watch.watch(r, config.format_watch_pid))
        try:
            yield
        finally:
            if watcher:
                watcher.cancel()
            await r.aclose()
            rq.close()

    app = FastAPI(
        title="webhooks",
        version=__version__,
        description=(
            "Signed, retried, durable webhook deliveries. The API reference (authentication, errors,"
            " pagination, idempotency, the wire format, retries and durability) is docs/api.md in"
            " the repository."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from api_docs: their scripts from here, not a CDN
        redoc_url=None,
    )
    errors.install(app)
    for module in (tenants, endpoints, events, deliveries, dead_letters, replays, health, event_types):
        app.include_router(module.router)
    console.mount(app, config.portal_frame_ancestors)
    api_docs.mount(app)
    ingest_schema.document(app)  # the two routes FastIngest serves, which FastAPI has no route for
    single_limit = config.policy.max_payload_bytes + 64 * 1024
    app.add_middleware(AcknowledgedWrites)  # innermost: holds a write's answer until replicas have it
    app.add_middleware(JsonBodies)  # inside BodyLimit: reads only bodies within the limit
    app.add_middleware(BodyLimit, single_limit=single_limit)
    app.add_middleware(HttpMetrics)  # outermost of ours: counts the 413s of BodyLimit too
    return FastIngest(app, single_limit)
