"""What a worker reports about its deliveries: metrics and per-delivery log lines.

The delivery engine calls these functions at a few points (one call each), so that the engine
stays free of metric and log plumbing:

- :func:`attempt_finished` after every HTTP attempt, with what followed it;
- :func:`lease_taken` / :func:`lease_released` when the engine takes and lets go of a lease.

Requests in flight are read from the engine when scraped (:func:`watch_engine`). The queue's
state comes from Redis at scrape time through :class:`webhooks.runtime.metrics.QueueGauges`, with
:func:`queue_reader` (every tenant's queues through :func:`webhooks.queueing.depths.depths`).
Every function here is cheap (a counter, a histogram bucket) and never raises into the engine.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import Counter

from webhooks.errors import ConfigError
from webhooks.queueing import depths, memory
from webhooks.runtime import metrics
from webhooks.runtime.connection import RedisTarget, async_client
from webhooks.runtime.logs import DELIVERY_LOGGER, DeliveryIds, delivery_log

_debug = logging.getLogger(DELIVERY_LOGGER)
_attempts: dict[tuple[str, str], Counter] = {}  # (outcome, status class) -> its counter (a few)


class AttemptLike(Protocol):
    """What :func:`attempt_finished` reads of an attempt (e.g. :class:`workers.sender.AttemptResult`)."""

    @property
    def status_code(self) -> int | None: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def error(self) -> str | None: ...


class _InFlight(Protocol):
    @property
    def in_flight(self) -> int: ...


def attempt_finished(
    d: DeliveryIds, outcome: str, result: AttemptLike, accepted_ms: int | None, now_ms: int
) -> None:
    """One attempt of ``d`` ended; ``outcome`` is what follows (``succeeded``, ``retrying``, ``dead``).

    Counts it (``webhooks_attempts_total{outcome,status_class}``), times it
    (``webhooks_attempt_seconds``), and for a success observes the end-to-end latency since the
    event was accepted at ``accepted_ms`` (unix ms). Logs the attempt with the delivery's ids: a
    success at DEBUG, a failure at INFO, a delivery that goes dead at WARNING. ``result.error``
    must be secret-free (as :class:`workers.sender.AttemptResult` errors are); it is redacted
    again anyway.
    """
    status_code, duration_s = result.status_code, result.duration_ms / 1000
    ok = outcome == "succeeded"
    key = (outcome, metrics.status_class(status_code))
    counter = _attempts.get(key)
    if counter is None:
        counter = _attempts[key] = metrics.ATTEMPTS.labels(*key)
    counter.inc()
    metrics.ATTEMPT_SECONDS.observe(duration_s)
    if ok and accepted_ms is not None:
        metrics.DELIVERY_LATENCY.observe(max(0.0, (now_ms - accepted_ms) / 1000))
    metrics.ENDPOINTS.record(d.endpoint_id, ok)
    level = logging.DEBUG if ok else logging.WARNING if outcome == "dead" else logging.INFO
    if not _debug.isEnabledFor(level):  # checked first: binding a logger costs more than counting
        return
    fields = {"outcome": outcome, "status_code": status_code, "duration_ms": round(duration_s * 1000)}
    if result.error:
        fields["error"] = result.error
    message = (
        "attempt succeeded"
        if ok
        else "attempt failed; the delivery is dead"
        if outcome == "dead"
        else "attempt failed; will retry"
    )
    delivery_log(d).log(level, message, **fields)


def lease_taken() -> None:
    metrics.LEASES_HELD.inc()


def lease_released() -> None:
    metrics.LEASES_HELD.dec()


def watch_engine(engine: _InFlight) -> None:
    """``webhooks_requests_in_flight`` reads ``engine.in_flight`` at scrape time."""
    metrics.REQUESTS_IN_FLIGHT.set_function(lambda: engine.in_flight)


# -- queue gauges (provisional reader) -------------------------------------------------------------


def queue_reader(
    target: RedisTarget, clock: Callable[[], float] = time.time
) -> Callable[[], Mapping[str, float]]:
    """A reader for :class:`~webhooks.runtime.metrics.QueueGauges`: :func:`webhooks.queueing.depths.depths`
    (every tenant's queues) and ``INFO memory``, read on a client of its own (scrapes run on
    prometheus-client's thread, outside any event loop).

    The oldest item's age is that of the longest-waiting ready delivery, counted from when it
    became ready (its last update, else its creation).
    """

    async def _read() -> Mapping[str, float]:
        r = async_client(target)
        try:
            now_ms = int(clock() * 1000)
            d = await depths.depths(r, now_ms)
            use = await memory.usage(r)
        finally:
            await r.aclose()
        oldest = 0.0 if d.oldest_ready_ms is None else max(0.0, (now_ms - d.oldest_ready_ms) / 1000)
        return {
            "queue_depth": d.ready,
            "queue_oldest_age_seconds": oldest,
            "retry_backlog": d.due,
            "dead_letters": d.dead,
            "leases_active": d.leases,
            "breaker_open_endpoints": d.breakers_open,
            "deliveries_reclaimed_total": d.counters.get("deliveries_reclaimed", 0),
            "redis_used_memory_bytes": use.used_bytes,
            "redis_maxmemory_bytes": use.max_bytes,
        }

    def read() -> Mapping[str, float]:
        values: Mapping[str, float] = asyncio.run(_read())
        return values

    return read


def serve_metrics(
    port: int, host: str, target: RedisTarget, *, per_endpoint: bool = False
) -> metrics.MetricsServer | None:
    """Serve this process's ``/metrics`` (queue gauges included) on ``host:port``; None when port is 0.

    Raises :class:`ConfigError` naming ``WEBHOOKS_METRICS_PORT`` when the port cannot be bound.
    """
    metrics.ENDPOINTS.enable(per_endpoint)
    if not port:
        return None
    gauges = metrics.QueueGauges(queue_reader(target))
    try:
        return metrics.serve(port, host, gauges)
    except OSError as exc:
        raise ConfigError(
            f"WEBHOOKS_METRICS_PORT: cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
