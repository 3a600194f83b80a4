"""What a worker reports about its deliveries: metrics and per-delivery log lines.

The delivery engine calls these functions at a few points (one call each), so that the engine
stays free of metric and log plumbing:

- :func:`attempt_finished` after every HTTP attempt, with what followed it;
- :func:`lease_taken` / :func:`lease_released` when the engine takes and lets go of a lease.

Requests in flight are read from the engine when scraped (:func:`watch_engine`). The queue's
state comes from Redis at scrape time through :class:`webhooks.metrics.QueueGauges`, with
:func:`queue_reader` (provisional: built on today's keys; the shared status snapshot replaces it).
Every function here is cheap (a counter, a histogram bucket) and never raises into the engine.
"""

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import redis
from prometheus_client import Counter

from webhooks import ids, keys, metrics
from webhooks.connection import RedisTarget, sync_client
from webhooks.errors import ConfigError
from webhooks.logs import DELIVERY_LOGGER, DeliveryIds, delivery_log

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
    r: "redis.Redis", clock: Callable[[], float] = time.time
) -> Callable[[], Mapping[str, float]]:
    """A reader for :class:`~webhooks.metrics.QueueGauges`: one pipeline over today's queue keys and
    ``INFO memory``.

    The oldest item's age is that of the delivery at the head of ``ready``, counted from its
    creation (its id's time), so a retried or replayed delivery there counts from its first
    acceptance. Breaker states are not known yet (no sample). ``r`` must decode responses.
    """

    def read() -> Mapping[str, float]:
        with r.pipeline(transaction=False) as pipe:
            pipe.llen(keys.READY)
            pipe.lindex(keys.READY, 0)
            pipe.zcard(keys.DUE)
            pipe.zcard(keys.DEAD_ALL)
            pipe.zcard(keys.LEASES)
            pipe.hget(keys.STATS, "deliveries_reclaimed")
            pipe.info("memory")
            ready, head, due, dead, leases, reclaimed, memory = pipe.execute()
        head_ms = ids.time_of(head) if head else None
        out: dict[str, float] = {
            "queue_depth": ready,
            "queue_oldest_age_seconds": max(0.0, clock() - head_ms / 1000) if head_ms is not None else 0.0,
            "retry_backlog": due,
            "dead_letters": dead,
            "leases_active": leases,
            "deliveries_reclaimed_total": int(reclaimed or 0),
            "redis_used_memory_bytes": memory.get("used_memory", 0),
            "redis_maxmemory_bytes": memory.get("maxmemory", 0),
        }
        return out

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
    gauges = metrics.QueueGauges(queue_reader(sync_client(target)))
    try:
        return metrics.serve(port, host, gauges)
    except OSError as exc:
        raise ConfigError(
            f"WEBHOOKS_METRICS_PORT: cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
