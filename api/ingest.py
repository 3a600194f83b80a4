"""The hot path: ``POST /v1/events`` and ``POST /v1/events/batch`` served in front of FastAPI.

Event ingest is the one route whose throughput users measure, so it is the
outermost ASGI layer: it authenticates (the tenant's key and rate limit, see
:class:`webhooks.stores.auth.Authenticator`), enforces the body limit, validates the
body's JSON (:mod:`api.jsonbody`: ``application/json`` only, no NaN, no duplicate key...) and
then its shape with the same pydantic models the OpenAPI document declares (a batch in
the shape they accept is read without a model per event, anything else through
the models for their errors), hands the events to the store's group-committing
:class:`~webhooks.intake.ingest.Ingestor` and writes the 202 as orjson would, from the
payload JSON already in each event's record. Errors are
answered exactly as the rest of the API answers them (:mod:`api.errors`).
Everything else passes through to FastAPI, which has no route for these two:
:mod:`api.ingest_schema` describes them in its OpenAPI document.
"""

import logging
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import errors, jsonbody
from api import metrics as api_metrics
from api.deps import AppState, caller_from_header, resolve_tenant
from api.schemas import EVENT_FIELD_MAX, EventBatch, EventCreate
from webhooks.errors import Invalid, PayloadTooLarge, WebhooksError
from webhooks.intake.ingest import EventIn
from webhooks.intake.validation import MAX_IDEMPOTENCY_KEY
from webhooks.queueing import history
from webhooks.queueing.arrivals import NewEvent
from webhooks.runtime import metrics
from webhooks.timefmt import iso_from_ms

log = logging.getLogger("webhooks.api")

SINGLE = "/v1/events"
BATCH = "/v1/events/batch"
BATCH_BODY_LIMIT = 64 * 1024 * 1024
_SINGLE_SECONDS = metrics.INGEST_SECONDS.labels("single")
_BATCH_SECONDS = metrics.INGEST_SECONDS.labels("batch")


class FastIngest:
    def __init__(self, app: FastAPI, single_limit: int) -> None:
        self.app = app
        self.single_limit = single_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        if path not in (SINGLE, BATCH):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response: Response | bytes
        try:
            response = await self._ingest(scope, receive, batch=path == BATCH)
        except WebhooksError as exc:
            response = errors.domain_error_response(exc)
        except errors.REDIS_ERRORS as exc:
            log.error("Redis error on POST %s: %s", path, type(exc).__name__)
            response = errors.redis_error_response(exc)
        except Exception:
            log.exception("unexpected error on POST %s", path)
            response = errors.error_response(500, "internal", "internal error")
        if isinstance(response, bytes):  # the 202, written without a Response object
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(response))]
            await send({"type": "http.response.start", "status": 202, "headers": headers})
            await send({"type": "http.response.body", "body": response})
        else:
            await response(scope, receive, send)
        (_BATCH_SECONDS if path == BATCH else _SINGLE_SECONDS).observe(time.perf_counter() - started)
        api_metrics.count(path, "POST", 202 if isinstance(response, bytes) else response.status_code)

    async def _ingest(self, scope: Scope, receive: Receive, *, batch: bool) -> Response | bytes:
        """The 202 body, or the error answer."""
        state: AppState = self.app.state.webhooks
        store = state.store
        headers = dict(scope["headers"])
        who = await caller_from_header(state, headers.get(b"authorization", b"").decode("latin-1"))
        query = (
            parse_qs(scope.get("query_string", b"").decode("latin-1")) if scope.get("query_string") else {}
        )
        tenant_id = await resolve_tenant(who, store, (query.get("tenant_id") or [None])[0])
        raw = await _read_body(receive, headers, BATCH_BODY_LIMIT if batch else self.single_limit)
        content_type = headers.get(b"content-type")
        if raw and content_type != b"application/json":
            jsonbody.check_media_type((content_type or b"").decode("latin-1"))
        try:
            doc = jsonbody.parse(raw)
        except jsonbody.JsonRefused as exc:
            return errors.validation_error_response([exc.problem()])
        try:
            if batch:
                events = _well_formed_batch(doc) or [
                    EventIn(e.event_type, e.payload, e.id) for e in EventBatch.model_validate_json(raw).events
                ]
            else:
                one = EventCreate.model_validate_json(raw)
                key = headers.get(b"idempotency-key")
                if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
                    return errors.validation_error_response(
                        [
                            {
                                "loc": ("header", "idempotency-key"),
                                "msg": f"at most {MAX_IDEMPOTENCY_KEY} characters",
                            }
                        ]
                    )
                events = [
                    EventIn(one.event_type, one.payload, one.id, key.decode("latin-1") if key else None)
                ]
        except ValidationError as exc:
            return errors.validation_error_response(exc.errors(include_url=False))
        accepted = await store.accept(tenant_id, events, int(time.time() * 1000), batch=batch)
        metrics.EVENTS_ACCEPTED.inc(sum(existing is None for _, existing in accepted))
        created_at = (iso_from_ms(accepted[0][0].created_ms) or "") if accepted else ""
        out = [
            _accepted_json(new, created_at)
            if existing is None
            else orjson.dumps((await store.deliveries.event_out(existing)).model_dump(mode="json")).decode()
            for new, existing in accepted
        ]
        return ("[" + ",".join(out) + "]" if batch else out[0]).encode()


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body, refused with 413 once it is larger than ``limit`` (declared or streamed)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Invalid("body: the client went away before sending all of it")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _well_formed_batch(doc: Any) -> list[EventIn] | None:
    """The events of a batch body (``doc``, read by :func:`api.jsonbody.parse`) that
    :class:`EventBatch` accepts as it is, without building a model per event; None for anything
    else (empty, extra or mistyped fields), which then goes through ``EventBatch`` so that its
    error names the field exactly as everywhere."""
    items = doc.get("events") if type(doc) is dict and len(doc) == 1 else None
    if type(items) is not list or not items:
        return None
    out = []
    limit = EVENT_FIELD_MAX
    for e in items:
        if type(e) is not dict:
            return None
        event_type, event_id = e.get("event_type"), e.get("id")
        if (
            type(event_type) is not str
            or len(event_type) > limit
            or "payload" not in e
            or len(e) != (3 if "id" in e else 2)
            or (event_id is not None and (type(event_id) is not str or len(event_id) > limit))
        ):
            return None
        out.append(EventIn(event_type, e["payload"], event_id))
    return out


def _accepted_json(new: NewEvent, created_at: str) -> str:
    """The 202 body of an event accepted now, as ``orjson.dumps`` of the event object would write
    it (one stored before is shown as ``GET`` shows it); ``created_at`` is ``new.created_ms``
    formatted (a batch shares one). Written from strings, not a dict per event: the payload is
    already serialized in the event's record, and no field here needs escaping (ids, tenant ids
    and event types are validated ASCII-safe text: letters, digits and ``_.:-``)."""
    deliveries = ",".join(f'{{"id":"{d}","endpoint_id":"{e}","status":"pending"}}' for d, e in new.deliveries)
    return (
        f'{{"id":"{new.event_id}","tenant_id":"{new.tenant_id}","event_type":"{new.event_type}",'
        f'"created_at":"{created_at}","payload":{history.payload_json_of(new.record)},'
        f'"deliveries":[{deliveries}]}}'
    )
