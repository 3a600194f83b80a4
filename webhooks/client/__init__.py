"""A typed Python client of the webhooks API, blocking (:class:`Client`) and asyncio
(:class:`AsyncClient`), on httpx::

    from webhooks.client import Client

    with Client("http://127.0.0.1:8000", "whk_…") as api:
        event = api.events.send("invoice.paid", {"invoice": "in_1", "amount": 4200})
        for delivery in api.deliveries.list(event_id=event.id):
            print(delivery.endpoint_id, delivery.status)

Resources: ``tenants``, ``endpoints``, ``events``, ``deliveries``, ``dead_letters``,
``replays``, ``event_types``; each method names its route in its docstring (the API
reference is docs/api.md in the repository). ``list`` methods iterate over every item of
every page. Errors raise :class:`ApiError` (HTTP status, the API's error ``code``,
``message``) or :class:`ApiConnectionError`. Calls that cannot do anything twice are
retried on connection errors, 429 and 503, honouring ``Retry-After``
(:mod:`webhooks.client.core` states the rules); ``events.send`` always carries an
``Idempotency-Key`` so that its retries never create a second event.

This module depends on httpx and pydantic only (no Redis, nothing of the API or workers).
"""

from webhooks.client import models
from webhooks.client.clients import AsyncClient, Client
from webhooks.client.errors import ApiConnectionError, ApiError
from webhooks.client.fields import UNSET
from webhooks.client.models import *  # noqa: F403 - the response objects, listed in models.__all__

__all__ = ["UNSET", "ApiConnectionError", "ApiError", "AsyncClient", "Client"]
__all__ += models.__all__
