"""Fixtures for the domain's Redis-facing modules: an event loop and an asyncio client on it."""

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio

from webhooks.runtime.connection import RedisTarget, async_client


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture
def ar(redis_url: str, loop: asyncio.AbstractEventLoop) -> Iterator["redis.asyncio.Redis"]:
    """The platform's own asyncio client on the test's flushed Redis."""
    client = async_client(RedisTarget(redis_url))
    yield client
    loop.run_until_complete(client.aclose())
