"""A real ``webhooks worker`` (and ``webhooks scheduler``) serving its own ``/metrics`` on
``WEBHOOKS_METRICS_PORT``, scraped over HTTP after deliveries to a real loopback receiver."""

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx

from tests.api.helpers import post_event
from tests.conftest import ROOT, Processes, Tenant
from tests.support.poll import poll
from tests.support.prom import Samples, scrape, value
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port

Endpoint = Callable[..., dict[str, Any]]


def _scrape_when_up(url: str) -> Samples:
    def attempt() -> Samples | None:
        try:
            return scrape(url)
        except httpx.HTTPError:
            return None

    samples = poll(attempt, what=f"{url} to answer")
    assert samples is not None
    return samples


def test_worker_metrics_move_with_attempts(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    make_endpoint(receiver.url("ok/m"), event_types=["good.news"])
    make_endpoint(receiver.url("fail/m"), event_types=["bad.news"])
    port = free_port()
    procs.worker(env={"WEBHOOKS_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"
    before = _scrape_when_up(url)
    assert value(before, "webhooks_attempts_total") == 0
    assert value(before, "webhooks_attempt_seconds_count") == 0

    for _ in range(5):
        post_event(api, tenant.auth, event_type="good.news")
    post_event(api, tenant.auth, event_type="bad.news")  # 4 attempts (schedule 0.2,0.2,0.2), then dead
    poll(lambda: len(receiver.to("ok/m")) == 5 and len(receiver.to("fail/m")) == 4, what="the attempts")

    def settled() -> Samples | None:
        s = scrape(url)
        return (
            s if value(s, "webhooks_attempts_total") == 9 and value(s, "webhooks_dead_letters") == 1 else None
        )

    after = poll(settled, what="every attempt counted and the dead letter seen")
    assert value(after, "webhooks_attempts_total", {"outcome": "succeeded", "status_class": "2xx"}) == 5
    assert value(after, "webhooks_attempts_total", {"outcome": "retrying", "status_class": "5xx"}) == 3
    assert value(after, "webhooks_attempts_total", {"outcome": "dead", "status_class": "5xx"}) == 1
    assert value(after, "webhooks_attempt_seconds_count") == 9
    assert value(after, "webhooks_attempt_seconds_sum") > 0
    assert value(after, "webhooks_delivery_latency_seconds_count") == 5
    assert value(after, "webhooks_requests_in_flight") == 0
    assert value(after, "webhooks_queue_depth") == 0
    assert value(after, "webhooks_retry_backlog") == 0
    assert value(after, "webhooks_redis_up") == 1
    assert value(after, "webhooks_redis_used_memory_bytes") > 0
    assert value(after, "webhooks_build_info") == 1
    assert not any(ls for n, ls in after if n == "webhooks_endpoint_attempts_total"), "off by default"


def test_per_endpoint_series_only_when_asked(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("ok/per"))
    port = free_port()
    procs.worker(env={"WEBHOOKS_METRICS_PORT": str(port), "WEBHOOKS_METRICS_PER_ENDPOINT": "true"})
    url = f"http://127.0.0.1:{port}/metrics"
    _scrape_when_up(url)
    post_event(api, tenant.auth)
    post_event(api, tenant.auth)

    mine = {"endpoint_id": ep["id"], "outcome": "succeeded"}
    poll(lambda: value(scrape(url), "webhooks_endpoint_attempts_total", mine) == 2, what="per-endpoint count")


def test_scheduler_serves_the_queue_gauges(api: httpx.Client, tenant: Tenant, procs: Processes) -> None:
    """No worker runs: the ready deliveries wait, and the scheduler's /metrics shows them."""
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/a"}, headers=tenant.auth).raise_for_status()
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/b"}, headers=tenant.auth).raise_for_status()
    for _ in range(3):
        post_event(api, tenant.auth)
    port = free_port()
    procs.start("scheduler", env={"WEBHOOKS_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"

    samples = _scrape_when_up(url)

    assert value(samples, "webhooks_queue_depth") == 6
    assert 0 <= value(samples, "webhooks_queue_oldest_age_seconds") < 600
    assert value(samples, "webhooks_dead_letters") == 0
    assert value(samples, "webhooks_redis_up") == 1


def test_a_metrics_port_in_use_stops_the_worker_naming_the_variable(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cli", "worker", "--burst"],
            env={**env, "WEBHOOKS_METRICS_PORT": str(port)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("webhooks: WEBHOOKS_METRICS_PORT: cannot serve metrics on 127.0.0.1:"), last
