"""The API's resources, each written once for both clients (see :mod:`webhooks.client.ops`).

Every method states its route and whether the client retries it (the rules are in
:mod:`webhooks.client.core`). Lists iterate over every item of every page; ``page_size``
is the API's ``limit`` (1 to 1000, default 50) and only changes how many requests that takes.
"""

import enum
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter

from webhooks import ids
from webhooks.client.core import Call, Listing, compact, query_value
from webhooks.client.models import (
    ApiKey,
    ApiKeyCreated,
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    Endpoint,
    EndpointWithSecret,
    Event,
    EventInput,
    EventType,
    PortalLink,
    RecoverResult,
    Replay,
    ReplayResult,
    Secret,
    Tenant,
    TenantCreated,
)
from webhooks.client.ops import M, Resource, listing, operation

T = TypeVar("T")
When = datetime | str  # a datetime (naive ones are UTC) or an ISO 8601 string


class Unset(enum.Enum):
    """The type of :data:`UNSET`: a field an update leaves as it is (None sets it to null)."""

    UNSET = "unset"


UNSET = Unset.UNSET
# Aliases: inside a resource class ``list`` names its list method, not the builtin.
EventList = list[Event]
ApiKeyList = list[ApiKey]
_EVENTS = TypeAdapter(EventList)
_API_KEYS = TypeAdapter(ApiKeyList)


def _path(template: str, *parts: str) -> str:
    return template.format(*(quote(p, safe="") for p in parts))


def _nothing(_: Any) -> None:
    return None


def _changes(**fields: Any) -> dict[str, Any]:
    return {k: query_value(v) for k, v in fields.items() if v is not UNSET}


def new_idempotency_key() -> str:
    """A random ``Idempotency-Key`` (128 bits), as :meth:`Events.send` adds when given none."""
    return "idk_" + secrets.token_hex(16)


class Tenants(Resource[M]):
    """Tenants, their API keys and portal links (admin token; a tenant key may read its own)."""

    @operation
    def create(self, name: str) -> Call[TenantCreated]:
        """``POST /v1/tenants``: a tenant and its first API key (``api_key``, shown once). Not retried."""
        return Call("POST", "/v1/tenants", TenantCreated.model_validate, json={"name": name})

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[Tenant]:
        """``GET /v1/tenants``: every tenant, newest first."""
        return Listing("/v1/tenants", Tenant.model_validate, page_size=page_size)

    @operation
    def get(self, tenant_id: str) -> Call[Tenant]:
        """``GET /v1/tenants/{id}``."""
        return Call("GET", _path("/v1/tenants/{}", tenant_id), Tenant.model_validate, retry_safe=True)

    @operation
    def delete(self, tenant_id: str) -> Call[None]:
        """``DELETE /v1/tenants/{id}``: the tenant, its keys and endpoints."""
        return Call("DELETE", _path("/v1/tenants/{}", tenant_id), _nothing, retry_safe=True)

    @operation
    def create_api_key(self, tenant_id: str) -> Call[ApiKeyCreated]:
        """``POST /v1/tenants/{id}/api-keys``: one more key (``api_key``, shown once). Not retried."""
        return Call("POST", _path("/v1/tenants/{}/api-keys", tenant_id), ApiKeyCreated.model_validate)

    @operation
    def list_api_keys(self, tenant_id: str) -> Call[ApiKeyList]:
        """``GET /v1/tenants/{id}/api-keys``: the tenant's keys (their prefixes, never the keys)."""
        path = _path("/v1/tenants/{}/api-keys", tenant_id)
        return Call("GET", path, _API_KEYS.validate_python, retry_safe=True)

    @operation
    def revoke_api_key(self, tenant_id: str, key_id: str) -> Call[None]:
        """``DELETE /v1/tenants/{id}/api-keys/{key_id}``: the key stops working."""
        path = _path("/v1/tenants/{}/api-keys/{}", tenant_id, key_id)
        return Call("DELETE", path, _nothing, retry_safe=True)

    @operation
    def create_portal_link(self, tenant_id: str, *, expires_in_s: float | None = None) -> Call[PortalLink]:
        """``POST /v1/tenants/{id}/portal-links``: a one-time sign-in link to the tenant's portal.
        Not retried."""
        path = _path("/v1/tenants/{}/portal-links", tenant_id)
        return Call("POST", path, PortalLink.model_validate, json=compact(expires_in_s=expires_in_s))


class Endpoints(Resource[M]):
    """Where a tenant's events go."""

    @operation
    def create(
        self,
        url: str,
        *,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit_per_s: float | None = None,
        max_in_flight: int | None = None,
        ordering: Literal["fifo"] | str | None = None,
        signing: Literal["hmac-sha256", "ed25519"] | str | None = None,
        disabled: bool | None = None,
    ) -> Call[EndpointWithSecret]:
        """``POST /v1/endpoints``: the endpoint with its signing ``secret``. Not retried.

        Fields left None take the server's defaults (all event types, no custom headers...).
        """
        body = compact(
            url=url,
            description=description,
            event_types=None if event_types is None else list(event_types),
            headers=None if headers is None else dict(headers),
            rate_limit_per_s=rate_limit_per_s,
            max_in_flight=max_in_flight,
            ordering=ordering,
            signing=signing,
            disabled=disabled,
        )
        return Call("POST", "/v1/endpoints", EndpointWithSecret.model_validate, json=body)

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[Endpoint]:
        """``GET /v1/endpoints``: every endpoint of the tenant, newest first."""
        return Listing("/v1/endpoints", Endpoint.model_validate, page_size=page_size)

    @operation
    def get(self, endpoint_id: str) -> Call[Endpoint]:
        """``GET /v1/endpoints/{id}``."""
        return Call("GET", _path("/v1/endpoints/{}", endpoint_id), Endpoint.model_validate, retry_safe=True)

    @operation
    def update(
        self,
        endpoint_id: str,
        *,
        url: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
        event_types: Sequence[str] | Unset | None = UNSET,
        headers: Mapping[str, str] | Unset | None = UNSET,
        rate_limit_per_s: float | Unset | None = UNSET,
        max_in_flight: int | Unset | None = UNSET,
        ordering: str | Unset | None = UNSET,
        disabled: bool | Unset = UNSET,
    ) -> Call[Endpoint]:
        """``PATCH /v1/endpoints/{id}``: changes the fields given (None sets one to null: all event
        types, no rate limit...); ``disabled=False`` re-enables. Retried (it sets values)."""
        body = _changes(
            url=url,
            description=description,
            event_types=event_types if not isinstance(event_types, Sequence) else list(event_types),
            headers=headers if not isinstance(headers, Mapping) else dict(headers),
            rate_limit_per_s=rate_limit_per_s,
            max_in_flight=max_in_flight,
            ordering=ordering,
            disabled=disabled,
        )
        path = _path("/v1/endpoints/{}", endpoint_id)
        return Call("PATCH", path, Endpoint.model_validate, json=body, retry_safe=True)

    @operation
    def delete(self, endpoint_id: str) -> Call[None]:
        """``DELETE /v1/endpoints/{id}``: nothing more is routed to it."""
        return Call("DELETE", _path("/v1/endpoints/{}", endpoint_id), _nothing, retry_safe=True)

    @operation
    def get_secret(self, endpoint_id: str) -> Call[Secret]:
        """``GET /v1/endpoints/{id}/secret``: the current signing secret."""
        path = _path("/v1/endpoints/{}/secret", endpoint_id)
        return Call("GET", path, Secret.model_validate, retry_safe=True)

    @operation
    def rotate_secret(self, endpoint_id: str, *, grace_period_s: float | None = None) -> Call[Secret]:
        """``POST /v1/endpoints/{id}/secret/rotate``: a new secret; the old one keeps signing (a
        second signature) for ``grace_period_s`` (server default 86400). Not retried."""
        path = _path("/v1/endpoints/{}/secret/rotate", endpoint_id)
        return Call("POST", path, Secret.model_validate, json=compact(grace_period_s=grace_period_s))

    @operation
    def recover(self, endpoint_id: str, since: When, until: When | None = None) -> Call[RecoverResult]:
        """``POST /v1/endpoints/{id}/recover``: re-sends what died at this endpoint between ``since``
        and ``until`` (default now), as a replay. Not retried."""
        path = _path("/v1/endpoints/{}/recover", endpoint_id)
        return Call("POST", path, RecoverResult.model_validate, json=compact(since=since, until=until))


class Events(Resource[M]):
    """What producers send."""

    @operation
    def send(
        self, event_type: str, payload: Any, idempotency_key: str | None = None, id: str | None = None
    ) -> Call[Event]:
        """``POST /v1/events``: accepted (stored durably) and routed to the matching endpoints.

        The request always carries an ``Idempotency-Key`` (a random one when none is given), so
        the client's own retries never create a second event: a repeat answers the stored
        event. Pass your own key, or an event ``id``, to make *your* repeats safe too (a key is
        remembered for 24 hours, an id as long as the event is kept). Retried.
        """
        body = {"event_type": event_type, "payload": payload, **compact(id=id)}
        headers = {"idempotency-key": idempotency_key or new_idempotency_key()}
        return Call("POST", "/v1/events", Event.model_validate, json=body, headers=headers, retry_safe=True)

    @operation
    def send_batch(
        self, events: Sequence[EventInput | Mapping[str, Any]], *, assign_ids: bool = True
    ) -> Call[EventList]:
        """``POST /v1/events/batch``: up to 1000 events, accepted all or nothing.

        The batch route takes no ``Idempotency-Key``; an event's ``id`` plays that part. With
        ``assign_ids`` (the default) every event without an ``id`` gets a fresh ``evt_…`` id
        here, so the request is retried safely; with ``assign_ids=False`` it is retried only
        when every event carries an id.
        """
        body = []
        for e in events:
            item = dict(e) if isinstance(e, Mapping) else {"event_type": e.event_type, "payload": e.payload}
            if isinstance(e, EventInput) and e.id is not None:
                item["id"] = e.id
            if assign_ids and not item.get("id"):
                item["id"] = ids.new_id(ids.EVENT)
            body.append(item)
        safe = all(item.get("id") for item in body)
        body_json = {"events": body}
        return Call("POST", "/v1/events/batch", _EVENTS.validate_python, json=body_json, retry_safe=safe)

    @operation
    def get(self, event_id: str) -> Call[Event]:
        """``GET /v1/events/{id}``: the event with one delivery summary per endpoint."""
        return Call("GET", _path("/v1/events/{}", event_id), Event.model_validate, retry_safe=True)

    @listing
    def list(
        self,
        *,
        event_type: str | None = None,
        since: When | None = None,
        until: When | None = None,
        page_size: int | None = None,
    ) -> Listing[Event]:
        """``GET /v1/events``: the tenant's events, newest first, optionally filtered."""
        params = compact(event_type=event_type, since=since, until=until)
        return Listing("/v1/events", Event.model_validate, params=params, page_size=page_size)


class Deliveries(Resource[M]):
    """One delivery per event and endpoint, with its attempts."""

    @listing
    def list(
        self,
        *,
        event_id: str | None = None,
        endpoint_id: str | None = None,
        status: DeliveryStatus | str | None = None,
        page_size: int | None = None,
    ) -> Listing[Delivery]:
        """``GET /v1/deliveries``: newest first, optionally filtered."""
        params = compact(event_id=event_id, endpoint_id=endpoint_id, status=status)
        return Listing("/v1/deliveries", Delivery.model_validate, params=params, page_size=page_size)

    @operation
    def get(self, delivery_id: str) -> Call[DeliveryDetail]:
        """``GET /v1/deliveries/{id}``: the delivery and every attempt."""
        path = _path("/v1/deliveries/{}", delivery_id)
        return Call("GET", path, DeliveryDetail.model_validate, retry_safe=True)

    @operation
    def retry(self, delivery_id: str) -> Call[DeliveryDetail]:
        """``POST /v1/deliveries/{id}/retry``: one new attempt now, whatever the status (409 while
        an attempt is under way). Not retried (a repeat would ask for another attempt)."""
        path = _path("/v1/deliveries/{}/retry", delivery_id)
        return Call("POST", path, DeliveryDetail.model_validate)


class DeadLetters(Resource[M]):
    """Deliveries whose retry schedule ran out (the admin token without a tenant sees all)."""

    @listing
    def list(
        self,
        *,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        since: When | None = None,
        until: When | None = None,
        page_size: int | None = None,
    ) -> Listing[Delivery]:
        """``GET /v1/dead-letters``: newest first; ``since``/``until`` bound the time they died."""
        params = compact(endpoint_id=endpoint_id, event_type=event_type, since=since, until=until)
        return Listing("/v1/dead-letters", Delivery.model_validate, params=params, page_size=page_size)

    @operation
    def replay(
        self,
        *,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        since: When | None = None,
        until: When | None = None,
        ids: Sequence[str] | None = None,
        dry_run: bool = False,
        rate_per_s: float | None = None,
    ) -> Call[ReplayResult]:
        """``POST /v1/dead-letters/replay``: requeues the matching dead deliveries for a fresh retry
        series (``rate_per_s`` paces them). ``dry_run`` only counts, and only a dry run is retried."""
        body = compact(
            endpoint_id=endpoint_id,
            event_type=event_type,
            since=since,
            until=until,
            ids=None if ids is None else list(ids),
            dry_run=dry_run,
            rate_per_s=rate_per_s,
        )
        path = "/v1/dead-letters/replay"
        return Call("POST", path, ReplayResult.model_validate, json=body, retry_safe=dry_run)


class Replays(Resource[M]):
    """Replays under way or done (from a dead-letter replay or an endpoint recovery)."""

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[Replay]:
        """``GET /v1/replays``: newest first."""
        return Listing("/v1/replays", Replay.model_validate, page_size=page_size)

    @operation
    def get(self, replay_id: str) -> Call[Replay]:
        """``GET /v1/replays/{id}``: its progress (``matched``, ``done``, ``remaining``, ``state``)."""
        return Call("GET", _path("/v1/replays/{}", replay_id), Replay.model_validate, retry_safe=True)

    @operation
    def cancel(self, replay_id: str) -> Call[None]:
        """``DELETE /v1/replays/{id}``: what it has not requeued yet stays dead."""
        return Call("DELETE", _path("/v1/replays/{}", replay_id), _nothing, retry_safe=True)


class EventTypes(Resource[M]):
    """The tenant's event-type catalogue; a catalogued type's JSON Schema is checked at ingest."""

    @operation
    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        archived: bool | None = None,
    ) -> Call[EventType]:
        """``POST /v1/event-types``. Not retried."""
        body = compact(
            name=name,
            description=description,
            schema=None if schema is None else dict(schema),
            archived=archived,
        )
        return Call("POST", "/v1/event-types", EventType.model_validate, json=body)

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[EventType]:
        """``GET /v1/event-types``."""
        return Listing("/v1/event-types", EventType.model_validate, page_size=page_size)

    @operation
    def get(self, name: str) -> Call[EventType]:
        """``GET /v1/event-types/{name}``."""
        return Call("GET", _path("/v1/event-types/{}", name), EventType.model_validate, retry_safe=True)

    @operation
    def update(
        self,
        name: str,
        *,
        description: str | Unset | None = UNSET,
        schema: Mapping[str, Any] | Unset | None = UNSET,
        archived: bool | Unset = UNSET,
    ) -> Call[EventType]:
        """``PATCH /v1/event-types/{name}``: changes the fields given (``schema=None`` drops the
        schema). Retried (it sets values)."""
        body = _changes(
            description=description,
            schema=schema if not isinstance(schema, Mapping) else dict(schema),
            archived=archived,
        )
        path = _path("/v1/event-types/{}", name)
        return Call("PATCH", path, EventType.model_validate, json=body, retry_safe=True)

    @operation
    def delete(self, name: str) -> Call[None]:
        """``DELETE /v1/event-types/{name}``."""
        return Call("DELETE", _path("/v1/event-types/{}", name), _nothing, retry_safe=True)
