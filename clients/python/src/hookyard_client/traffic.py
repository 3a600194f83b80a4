"""Resources of the traffic: events, deliveries, dead letters, replays
(conventions: :mod:`hookyard_client.methods`)."""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from hookyard_client.core import Call, Listing, compact
from hookyard_client.fields import When, new_event_id, new_idempotency_key, nothing, route_path
from hookyard_client.methods import M, Resource, listing, operation
from hookyard_client.models import (
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    Event,
    EventInput,
    Replay,
    ReplayResult,
)

# An alias: inside a resource class ``list`` names its list method, not the builtin.
EventList = list[Event]
_EVENTS = TypeAdapter(EventList)


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
                item["id"] = new_event_id()
            body.append(item)
        safe = all(item.get("id") for item in body)
        body_json = {"events": body}
        return Call("POST", "/v1/events/batch", _EVENTS.validate_python, json=body_json, retry_safe=safe)

    @operation
    def get(self, event_id: str) -> Call[Event]:
        """``GET /v1/events/{id}``: the event with one delivery summary per endpoint."""
        return Call("GET", route_path("/v1/events/{}", event_id), Event.model_validate, retry_safe=True)

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
        path = route_path("/v1/deliveries/{}", delivery_id)
        return Call("GET", path, DeliveryDetail.model_validate, retry_safe=True)

    @operation
    def retry(self, delivery_id: str) -> Call[DeliveryDetail]:
        """``POST /v1/deliveries/{id}/retry``: one new attempt now, whatever the status (409 while
        an attempt is under way). Not retried (a repeat would ask for another attempt)."""
        path = route_path("/v1/deliveries/{}/retry", delivery_id)
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
        status_code: int | str | None = None,
        page_size: int | None = None,
    ) -> Listing[Delivery]:
        """``GET /v1/dead-letters``: newest first; ``since``/``until`` bound the time they died;
        ``status_code`` the last answer (``500``, ``"5xx"``, or ``"none"`` for no answer)."""
        params = compact(
            endpoint_id=endpoint_id, event_type=event_type, since=since, until=until, status_code=status_code
        )
        return Listing("/v1/dead-letters", Delivery.model_validate, params=params, page_size=page_size)

    @operation
    def replay(
        self,
        *,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        since: When | None = None,
        until: When | None = None,
        status_code: int | str | None = None,
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
            status_code=None if status_code is None else str(status_code),
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
        return Call("GET", route_path("/v1/replays/{}", replay_id), Replay.model_validate, retry_safe=True)

    @operation
    def cancel(self, replay_id: str) -> Call[None]:
        """``DELETE /v1/replays/{id}``: what it has not requeued yet stays dead."""
        return Call("DELETE", route_path("/v1/replays/{}", replay_id), nothing, retry_safe=True)
