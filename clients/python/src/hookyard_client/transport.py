"""The two ways to perform the core's steps (:func:`hookyard_client.core.exchange`): blocking
(``httpx.Client``, ``time.sleep``) and asyncio (``httpx.AsyncClient``, ``asyncio.sleep``).

Nothing here decides anything: what to send, whether to retry and how to read the answer
all come from the core, so the two clients behave the same by construction.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, TypeVar

import httpx

from hookyard_client.core import Call, Listing, Outcome, Send, Session, Wait, drive, exchange

T = TypeVar("T")


class Transport(Protocol):
    """What a resource needs: run one call, iterate over a listing (sync or async results)."""

    def run(self, call: Call[T]) -> Any: ...

    def iterate(self, listing: Listing[T]) -> Any: ...


def _request(send: Send) -> dict[str, Any]:
    return {"params": send.params, "headers": send.headers, "json": send.json, "timeout": send.timeout_s}


class SyncTransport:
    def __init__(self, http: httpx.Client, session: Session) -> None:
        self.http = http
        self.session = session

    def _perform(self, send: Send) -> Outcome:
        try:
            return self.http.request(send.method, send.url, **_request(send))
        except httpx.TransportError as exc:
            return exc

    def run(self, call: Call[T]) -> T:
        return drive(exchange(call, self.session), self._perform, time.sleep)

    def iterate(self, listing: Listing[T]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = self.run(listing.page(cursor))
            yield from items
            if cursor is None:
                return


class AsyncTransport:
    def __init__(self, http: httpx.AsyncClient, session: Session) -> None:
        self.http = http
        self.session = session

    async def _perform(self, send: Send) -> Outcome:
        try:
            return await self.http.request(send.method, send.url, **_request(send))
        except httpx.TransportError as exc:
            return exc

    async def run(self, call: Call[T]) -> T:
        """:func:`~hookyard_client.core.drive`, awaiting each request and wait."""
        steps = exchange(call, self.session)
        reply: Outcome | None = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, Wait):
                    await asyncio.sleep(step.seconds)
                    reply = None
                else:
                    reply = await self._perform(step)
        except StopIteration as done:
            result: T = done.value
            return result

    async def iterate(self, listing: Listing[T]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            items, cursor = await self.run(listing.page(cursor))
            for item in items:
                yield item
            if cursor is None:
                return
