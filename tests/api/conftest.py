"""Fixtures of the API tests; the helpers they use live in :mod:`tests.api.helpers`."""

import asyncio
from collections.abc import Callable, Mapping

import pytest

from tests.api.helpers import lease_async, now_ms, settle_async


@pytest.fixture
def settle(redis_url: str) -> Callable[..., int]:
    """``settle({delivery_id: kind}, at_ms=...)``: lease every ready delivery and record an outcome.

    ``kind`` is one of :data:`OUTCOMES`; deliveries not named go back to the ready list (the
    ones already due at ``at_ms`` are promoted along with them). ``at_ms`` is the instant of
    the attempt, hence ``dead_at`` of the dead ones. Returns the number of outcomes applied.
    """

    def run(outcomes: Mapping[str, str], at_ms: int | None = None) -> int:
        return asyncio.run(settle_async(redis_url, outcomes, now_ms() if at_ms is None else at_ms))

    return run


@pytest.fixture
def lease_all(redis_url: str) -> Callable[[], list[str]]:
    """Lease every ready delivery (status ``delivering``) and keep the lease, like a busy worker."""
    return lambda: asyncio.run(lease_async(redis_url, now_ms()))
