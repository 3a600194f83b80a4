"""A typed Python client of the hookyard webhooks API, blocking (:class:`Client`) and asyncio
(:class:`AsyncClient`), on httpx and pydantic::

    from hookyard_client import Client

    with Client() as api:  # WEBHOOKS_API_URL and WEBHOOKS_API_KEY, or Client(url, key)
        event = api.events.send("invoice.paid", {"invoice": "in_1", "amount": 4200})
        for delivery in api.deliveries.list(event_id=event.id):
            print(delivery.endpoint_id, delivery.status)

Resources: ``tenants``, ``endpoints``, ``events``, ``deliveries``, ``dead_letters``,
``replays``, ``event_types``; each method names its route in its docstring (the API
reference is docs/api.md in the server's repository). ``list`` methods iterate over every
item of every page. Errors raise :class:`ApiError` (HTTP status, the API's error ``code``,
``message``) or :class:`ApiConnectionError`, both a :class:`ClientError`. Calls that cannot
do anything twice are retried on connection errors, 429 and 503, honouring ``Retry-After``
(:mod:`hookyard_client.core` states the rules); ``events.send`` always carries an
``Idempotency-Key`` so that its retries never create a second event.

This package depends on httpx and pydantic only; it imports nothing of the server.
"""

from hookyard_client import models
from hookyard_client._version import __version__
from hookyard_client.clients import API_KEY_VARIABLE, API_URL_VARIABLE, AsyncClient, Client
from hookyard_client.errors import ApiConnectionError, ApiError, ClientError
from hookyard_client.fields import UNSET
from hookyard_client.models import *  # noqa: F403 - the response objects, listed in models.__all__

__all__ = [
    "API_KEY_VARIABLE",
    "API_URL_VARIABLE",
    "UNSET",
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "__version__",
]
__all__ += models.__all__
