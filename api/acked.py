"""Acknowledged API writes: a successful write is answered only once the replicas hold it.

With ``WEBHOOKS_ACK_REPLICAS`` (or ``WEBHOOKS_ACK_FSYNC``) set, every request that may write
(``POST``, ``PUT``, ``PATCH``, ``DELETE``) and succeeds (2xx, or the 303 by which the console
answers a form it acted on) has its answer held here until
:func:`webhooks.runtime.replication.acknowledge` says the primary's replicas (or its AOF) have every
write the handler made; when they do not in time, the answer becomes 503
``replication_timeout`` with ``Retry-After`` (the write stays on the primary: the same request
sent again finds it). One place for tenants, API keys, endpoints, secret rotations, replays and
the console; event ingest is acknowledged by the group commit itself (:mod:`webhooks.intake.ingest`),
so its two routes pass through.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.deps import AppState
from api.ingest import BATCH, SINGLE
from webhooks.errors import WebhooksError
from webhooks.runtime import replication

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AcknowledgedWrites:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState | None = getattr(scope["app"].state, "webhooks", None) if "app" in scope else None
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or state is None
            or not state.store.policy.ack.enabled
            or scope["path"].rstrip("/") in (SINGLE, BATCH)
        ):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            success = message["type"] == "http.response.start" and 200 <= int(message["status"]) < 400
            if success or (held and message["type"] == "http.response.body"):
                held.append(message)
            else:
                await send(message)

        await self.app(scope, receive, hold)
        if not held:
            return
        try:
            await replication.acknowledge(state.store.r, state.store.policy.ack)
        except WebhooksError as exc:
            await errors.domain_error_response(exc)(scope, receive, send)
            return
        except errors.REDIS_ERRORS as exc:
            await errors.redis_error_response(exc)(scope, receive, send)
            return
        for message in held:
            await send(message)
