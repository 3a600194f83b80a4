"""The metric pieces on their own: the queue gauges' one cached read, the provisional reader on a
real Redis, status classes, and the bounded per-endpoint series."""

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import redis

from tests.api.helpers import post_event
from tests.conftest import Tenant
from webhooks.runtime import metrics
from webhooks.runtime.connection import RedisTarget
from workers.observe import queue_reader

Endpoint = Callable[..., dict[str, Any]]


def samples(collector: Any) -> dict[str, float]:
    return {s.name: s.value for family in collector.collect() for s in family.samples}


def test_queue_gauges_read_once_per_ttl_and_survive_a_failing_read() -> None:
    calls: list[float] = []
    failing = False

    def read() -> Mapping[str, float]:
        calls.append(time.monotonic())
        if failing:
            raise redis.ConnectionError("down")
        return {"queue_depth": 7, "dead_letters": 2}

    gauges = metrics.QueueGauges(read, ttl_s=0.2)

    first, second = samples(gauges), samples(gauges)

    assert len(calls) == 1, "two scrapes within the TTL share one read"
    assert first == second
    assert first["webhooks_queue_depth"] == 7 and first["webhooks_dead_letters"] == 2
    assert first["webhooks_redis_up"] == 1
    assert "webhooks_retry_backlog" not in first, "a value the reader lacks has no sample"
    failing = True
    time.sleep(0.25)
    down = samples(gauges)
    assert len(calls) == 2
    assert down == {"webhooks_redis_up": 0}


def test_provisional_reader_on_real_redis(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, rds: "redis.Redis", redis_url: str
) -> None:
    make_endpoint("http://127.0.0.1:9/hook")
    accepted_at = time.time()
    for _ in range(4):
        post_event(api, tenant.auth)
    time.sleep(0.05)

    values = queue_reader(RedisTarget(redis_url))()

    assert values["queue_depth"] == 4
    assert 0.05 <= values["queue_oldest_age_seconds"] <= time.time() - accepted_at + 0.01
    assert values["retry_backlog"] == 0 and values["dead_letters"] == 0 and values["leases_active"] == 0
    assert values["redis_used_memory_bytes"] > 0
    assert values["redis_maxmemory_bytes"] == int(rds.config_get("maxmemory")["maxmemory"])
    assert set(values) <= set(metrics.QUEUE_METRICS), "the reader's keys are the collector's"


def test_an_empty_queue_has_no_age(rds: "redis.Redis", redis_url: str) -> None:
    values = queue_reader(RedisTarget(redis_url))()

    assert values["queue_depth"] == 0 and values["queue_oldest_age_seconds"] == 0


def test_status_classes() -> None:
    codes = [None, 99, 100, 200, 204, 302, 410, 429, 500, 599, 600]
    assert [metrics.status_class(c) for c in codes] == [
        "none",
        "none",
        "1xx",
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
        "5xx",
        "none",
    ]


def test_per_endpoint_series_are_off_by_default_and_bounded_when_on() -> None:
    top = metrics.EndpointTop(top_n=3, tracked_max=10)
    top.record("ep_x", True)
    assert not [s for f in top.collect() for s in f.samples], "off: nothing counted"

    top.enable()
    for i in range(50):  # 50 endpoints, endpoint i attempted i + 1 times
        for _ in range(i + 1):
            top.record(f"ep_{i}", ok=i % 2 == 0)

    exported = {
        (s.labels["endpoint_id"], s.labels["outcome"]): s.value for f in top.collect() for s in f.samples
    }
    assert {e for e, _ in exported} == {"ep_49", "ep_48", "ep_47"}, "only the busiest"
    assert exported[("ep_49", "failed")] == 50 and exported[("ep_49", "succeeded")] == 0
    assert exported[("ep_48", "succeeded")] == 49
    assert len(top._counts) <= 10, "tracking is bounded too"
