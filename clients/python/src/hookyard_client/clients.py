"""The blocking :class:`Client` and the asyncio :class:`AsyncClient`: one set of resources
(:mod:`hookyard_client.config_resources`, :mod:`hookyard_client.traffic`) over a sync or an async
transport."""

import os
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx

from hookyard_client.config_resources import Endpoints, EventTypes, Tenants
from hookyard_client.core import RetryPolicy, Session
from hookyard_client.methods import Async, M, Sync
from hookyard_client.traffic import DeadLetters, Deliveries, Events, Replays
from hookyard_client.transport import AsyncTransport, SyncTransport, Transport

H = TypeVar("H", httpx.Client, httpx.AsyncClient)

# Read when the constructor is not given ``base_url`` or ``token`` (the server's `webhooks` CLI
# reads the same WEBHOOKS_API_URL for its operator commands).
API_URL_VARIABLE = "WEBHOOKS_API_URL"
API_KEY_VARIABLE = "WEBHOOKS_API_KEY"


def _from_env(given: str | None, variable: str, what: str) -> str:
    value = given if given is not None else os.environ.get(variable, "").strip()
    if not value:
        raise ValueError(f"{what}: pass it, or set {variable}")
    return value


class _Base(Generic[M, H]):
    """The constructor and resources both clients share.

    ``base_url`` is the API's root (``http://127.0.0.1:8000``), by default the environment
    variable ``WEBHOOKS_API_URL``; ``token`` a tenant API key (``whk_…``) or the admin token,
    by default ``WEBHOOKS_API_KEY``; ``tenant_id`` makes an admin-token client act for that
    tenant (it is sent as the ``tenant_id`` query parameter on tenant-scoped routes).
    ``timeout_s`` bounds each attempt; ``max_retries`` is how many times a call that may be
    retried is tried again (0: never), waiting ``backoff_s`` doubling up to ``max_backoff_s``
    (jittered) and never less than a ``Retry-After``; an answer asking to wait longer than
    ``max_retry_after_s`` raises at once. ``http`` is an httpx client of your own (proxies,
    event hooks, mounts); it is left open by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        tenant_id: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 60.0,
        http: H | None = None,
    ) -> None:
        base_url = _from_env(base_url, API_URL_VARIABLE, "base_url: the API's http:// or https:// URL")
        token = _from_env(token, API_KEY_VARIABLE, "token: a tenant API key or the admin token")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: an http:// or https:// URL (got {base_url!r})")
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_retries must be 0 or more and timeout_s above 0")
        policy = RetryPolicy(max_retries, backoff_s, max_backoff_s, max_retry_after_s)
        session = Session(base_url, token, tenant_id, timeout_s, policy)
        self._owns_http = http is None
        self._http: H = self._new_http() if http is None else http
        transport = self._transport(self._http, session)
        self.tenants: Tenants[M] = Tenants(transport)
        self.endpoints: Endpoints[M] = Endpoints(transport)
        self.events: Events[M] = Events(transport)
        self.deliveries: Deliveries[M] = Deliveries(transport)
        self.dead_letters: DeadLetters[M] = DeadLetters(transport)
        self.replays: Replays[M] = Replays(transport)
        self.event_types: EventTypes[M] = EventTypes(transport)

    def _new_http(self) -> H:
        raise NotImplementedError

    def _transport(self, http: H, session: Session) -> Transport:
        raise NotImplementedError


class Client(_Base[Sync, httpx.Client]):
    __doc__ = "A blocking client of the webhooks API (thread-safe). " + (_Base.__doc__ or "")

    def _new_http(self) -> httpx.Client:
        return httpx.Client()

    def _transport(self, http: httpx.Client, session: Session) -> Transport:
        return SyncTransport(http, session)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient(_Base[Async, httpx.AsyncClient]):
    __doc__ = "An asyncio client of the webhooks API. " + (_Base.__doc__ or "")

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    def _transport(self, http: httpx.AsyncClient, session: Session) -> Transport:
        return AsyncTransport(http, session)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
