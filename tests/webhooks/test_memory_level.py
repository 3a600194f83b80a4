"""The memory budget's levels (pure): ok, trimming, full, and the way back; and the API's own
check at the hard watermark on a real Redis."""

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio

from webhooks.queueing.memory import LevelCache, Usage, level, publish

MAX = 1000


def at(share: float) -> Usage:
    return Usage(int(share * MAX), MAX)


def test_no_limit_means_no_budget() -> None:
    assert level(Usage(10**9, 0), "ok", high_share=0.7, history_left=True) == "ok"


def test_above_the_high_watermark_history_is_trimmed_and_ingest_goes_on() -> None:
    assert level(at(0.69), "ok", high_share=0.7, history_left=True) == "ok"
    assert level(at(0.75), "ok", high_share=0.7, history_left=True) == "trimming"
    assert level(at(0.65), "trimming", high_share=0.7, history_left=True) == "trimming"  # down to 60 %
    assert level(at(0.59), "trimming", high_share=0.7, history_left=True) == "ok"


def test_pending_work_alone_above_the_watermark_is_full_until_it_drains() -> None:
    assert level(at(0.75), "trimming", high_share=0.7, history_left=False) == "full"
    assert level(at(0.67), "full", high_share=0.7, history_left=False) == "full"
    assert level(at(0.64), "full", high_share=0.7, history_left=False) == "ok"


def test_ingest_outrunning_the_trimming_waits_at_the_hard_watermark() -> None:
    assert level(at(0.91), "trimming", high_share=0.7, history_left=True) == "full"
    assert level(at(0.87), "full", high_share=0.7, history_left=True) == "full"
    assert level(at(0.84), "full", high_share=0.7, history_left=True) == "trimming"
    assert level(at(1.0), "ok", high_share=0.7, history_left=True) == "full"


@pytest.fixture
def maxmemory(rds: "redis.Redis") -> Iterator[Callable[[float], None]]:
    """Set the test Redis' ``maxmemory`` so that its current use is the given share of it."""

    def set_share(share: float) -> None:
        used = int(rds.info("memory")["used_memory"])
        rds.config_set("maxmemory", str(int(used / share)))

    yield set_share
    rds.config_set("maxmemory", "0")


def test_the_api_refuses_at_the_hard_watermark_without_waiting_for_the_scheduler(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop, maxmemory: Callable[[float], None]
) -> None:
    # the scheduler last published "ok"; since then ingest took Redis to 93 % of maxmemory
    loop.run_until_complete(publish(ar, "ok", Usage(1, 100), 0, high_share=0.7))
    maxmemory(0.93)
    assert loop.run_until_complete(LevelCache(ar).level()) == "full"


def test_the_api_follows_the_published_level_below_the_hard_watermark(
    ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop, maxmemory: Callable[[float], None]
) -> None:
    maxmemory(0.5)
    cache = LevelCache(ar, ttl_s=0)
    assert loop.run_until_complete(cache.level()) == "ok"  # nothing published: no scheduler yet
    loop.run_until_complete(publish(ar, "full", Usage(1, 100), 0, high_share=0.7))
    assert loop.run_until_complete(cache.level()) == "full"  # pending work alone fills it
    # a higher high watermark moves the hard one with it: 93 % is below 0.8 + 0.2 capped at 95 %
    loop.run_until_complete(publish(ar, "ok", Usage(1, 100), 0, high_share=0.8))
    maxmemory(0.93)
    assert loop.run_until_complete(cache.level()) == "ok"
