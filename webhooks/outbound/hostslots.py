"""How many requests one worker process has open to one receiver host at once.

Many endpoints often share a host (one receiver serving many tenants' URLs), and the engine
starts up to an endpoint's slow-start window of deliveries at once. Without a bound per host,
a worker opens as many TLS connections to that host as it has requests in flight, uses each for
few requests and pays a handshake for each. :class:`HostSlots` bounds the requests in flight to
one origin (scheme, host, port) to ``per_host``; the rest wait here, in arrival order, for a
request to that host to finish. The aiohttp connector has the same bound
(``limit_per_host``, :func:`webhooks.outbound.netguard.make_guarded_session`), so the pool
never opens more than ``per_host`` connections to a host and a waiting request takes over a
kept-alive one instead of opening its own.

Why wait here and not in the connector's queue: the connector's wait is part of the request as
the sender times it (``asyncio.timeout`` round the whole exchange), so a healthy delivery queued
behind others on a busy host would time out without the receiver being slow. Here the wait
comes before the request's clock starts (and before the delivery is signed, so its timestamp
is the time it leaves, and before its endpoint copy is last checked).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

DEFAULT_PER_HOST = 8  # what a receiver accepts from one sender without noticing (docs/operations.md)


def origin(url: str) -> tuple[str, str, int]:
    """The pool's key of ``url``: scheme, host (lower case) and port (the default one if none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or ""), port or (443 if scheme == "https" else 80)


class HostSlots:
    """At most ``per_host`` requests at once to one origin; 0 means no bound."""

    def __init__(self, per_host: int = DEFAULT_PER_HOST) -> None:
        self.per_host = per_host
        self._hosts: dict[tuple[str, str, int], tuple[asyncio.Semaphore, list[int]]] = {}

    def busy(self, url: str) -> int:
        """Requests holding or waiting for a slot of ``url``'s host (for tests and metrics)."""
        entry = self._hosts.get(origin(url))
        return entry[1][0] if entry else 0

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[bool]:
        """Hold one of the host's slots; yields whether it had to wait for it."""
        if self.per_host <= 0:
            yield False
            return
        key = origin(url)
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = (asyncio.Semaphore(self.per_host), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            waited = semaphore.locked()
            async with semaphore:
                yield waited
        finally:
            users[0] -= 1
            if users[0] == 0:  # nobody holds or waits: forget the host (bounded memory)
                del self._hosts[key]
