"""Every Prometheus metric of the platform, defined once (prometheus-client), and how it is served.

All metrics live in :data:`REGISTRY`. Each process drives the ones it owns: the API the
``http``/``ingest``/``events`` ones, a worker the ``attempt``/``delivery``/``in flight``/``leases``
ones (through :mod:`workers.observe`); the queue gauges are read from Redis at scrape time by a
:class:`QueueGauges` collector that a worker or scheduler registers with :func:`serve`.

Label cardinality is bounded by construction: no per-event or per-tenant label; ``route`` is the
route template (``/v1/endpoints/{endpoint_id}``), ``status`` the API's own answer code (a fixed
set), ``status_class`` a receiver's answer folded to ``2xx``..``5xx`` or ``none`` (no answer);
per-endpoint series (:data:`ENDPOINTS`) exist only when enabled, and then for the top
:data:`ENDPOINT_TOP_N` endpoints by attempts.

``webhooks api`` with several uvicorn workers uses prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set up by the CLI with :mod:`webhooks.runtime.multiproc`):
:func:`exposition` then merges every worker's files, so any worker answers a scrape with the
totals of all.
"""

import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from webhooks import __version__
from webhooks.runtime.multiproc import MULTIPROC_ENV

log = logging.getLogger("webhooks.metrics")


# no `_created` series next to every counter and histogram
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "webhooks_build_info",
    "Always 1; the labels name the running version.",
    ["version", "python"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)

# -- API -------------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "webhooks_http_requests",
    "API requests answered, by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "webhooks_ingest_seconds",
    "Time to answer POST /v1/events (kind=single) or /v1/events/batch (kind=batch), any answer.",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
EVENTS_ACCEPTED = Counter(
    "webhooks_events_accepted",
    "Events newly stored by ingest (a repeated id or idempotency key is not counted again).",
    registry=REGISTRY,
)

# -- delivery engine -------------------------------------------------------------------------------

ATTEMPTS = Counter(
    "webhooks_attempts",
    "HTTP delivery attempts, by what followed (succeeded, retrying, dead) and the receiver's "
    "status class (2xx..5xx, none when no answer came: timeout, connection or TLS error).",
    ["outcome", "status_class"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "webhooks_attempt_seconds",
    "Duration of one delivery attempt (connect, send, answer), any outcome.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "webhooks_delivery_latency_seconds",
    "From the event's acceptance to its successful delivery to an endpoint (retries included).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 7200, 21600, 86400),
    registry=REGISTRY,
)
REQUESTS_IN_FLIGHT = Gauge(
    "webhooks_requests_in_flight",
    "Delivery requests this worker process has started and not finished.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
LEASES_HELD = Gauge(
    "webhooks_leases_held",
    "Leases (batches of deliveries) this worker process holds now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


def status_class(status_code: int | None) -> str:
    """``"2xx"`` for 200..299 and so on; ``"none"`` when there was no HTTP answer."""
    if status_code is None or not 100 <= status_code <= 599:
        return "none"
    return f"{status_code // 100}xx"


# -- per-endpoint series (off unless WEBHOOKS_METRICS_PER_ENDPOINT) --------------------------------

ENDPOINT_TOP_N = 20
ENDPOINT_TRACKED_MAX = 5000


class EndpointTop(Collector):
    """``webhooks_endpoint_attempts_total{endpoint_id,outcome}`` for the busiest endpoints only.

    Counts are kept per endpoint in this process (at most :data:`ENDPOINT_TRACKED_MAX`; past that
    the less busy half is forgotten) and only the top :data:`ENDPOINT_TOP_N` by attempts are
    exported, so the series stay bounded however many endpoints exist. ``outcome`` is
    ``succeeded`` or ``failed``. Disabled (nothing counted or exported) unless :meth:`enable`.
    """

    def __init__(self, top_n: int = ENDPOINT_TOP_N, tracked_max: int = ENDPOINT_TRACKED_MAX) -> None:
        self.enabled = False
        self.top_n = top_n
        self.tracked_max = tracked_max
        self._counts: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def enable(self, on: bool = True) -> None:
        self.enabled = on

    def record(self, endpoint_id: str, ok: bool) -> None:
        if not self.enabled:
            return
        with self._lock:
            counts = self._counts.get(endpoint_id)
            if counts is None:
                if len(self._counts) >= self.tracked_max:
                    keep = sorted(self._counts.items(), key=lambda kv: -sum(kv[1]))[: self.tracked_max // 2]
                    self._counts = dict(keep)
                counts = self._counts[endpoint_id] = [0, 0]
            counts[0 if ok else 1] += 1

    def describe(self) -> Iterable[Any]:
        yield self._family()

    def collect(self) -> Iterable[Any]:
        family = self._family()
        with self._lock:
            top = sorted(self._counts.items(), key=lambda kv: -sum(kv[1]))[: self.top_n]
        for endpoint_id, (ok, failed) in top:
            family.add_metric([endpoint_id, "succeeded"], ok)
            family.add_metric([endpoint_id, "failed"], failed)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "webhooks_endpoint_attempts",
            f"Attempts per endpoint for the {ENDPOINT_TOP_N} busiest endpoints of this worker "
            "(only with WEBHOOKS_METRICS_PER_ENDPOINT=true).",
            labels=["endpoint_id", "outcome"],
        )


ENDPOINTS = EndpointTop()
REGISTRY.register(ENDPOINTS)

# -- queue gauges, read from Redis at scrape time ---------------------------------------------------

# key in the reader's mapping -> (metric type, help). The metric is "webhooks_" + key.
QUEUE_METRICS: dict[str, tuple[str, str]] = {
    "queue_depth": ("gauge", "Deliveries ready to be sent now, not yet leased by a worker."),
    "queue_oldest_age_seconds": ("gauge", "Age of the oldest delivery waiting to be sent now."),
    "retry_backlog": ("gauge", "Deliveries waiting for their next attempt (retries, deferred, replays)."),
    "dead_letters": ("gauge", "Dead deliveries kept in the dead letters."),
    "leases_active": ("gauge", "Leases registered in Redis, all workers together (a dead one's too)."),
    "breaker_open_endpoints": ("gauge", "Endpoints whose circuit breaker is open now."),
    "redis_used_memory_bytes": ("gauge", "Redis used_memory."),
    "redis_maxmemory_bytes": ("gauge", "Redis maxmemory (0: no limit)."),
    "deliveries_reclaimed_total": ("counter", "Deliveries returned to the queue from expired leases."),
}


class QueueGauges(Collector):
    """The queue's state as gauges, from ONE ``read()`` per scrape, cached for ``ttl_s``.

    ``read`` returns a mapping from the keys of :data:`QUEUE_METRICS` to numbers (a missing key
    leaves that metric without a sample) and may raise: the scrape then still succeeds, without
    the queue samples, and ``webhooks_redis_up`` is 0. Concurrent scrapes share one read.
    """

    def __init__(self, read: Callable[[], Mapping[str, float]], ttl_s: float = 1.0) -> None:
        self.read = read
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = -1e9
        self._values: Mapping[str, float] | None = None
        self._warned_at = -1e9

    def values(self) -> Mapping[str, float] | None:
        """The latest read, at most ``ttl_s`` old; None when Redis could not be read."""
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.ttl_s:
                try:
                    self._values = self.read()
                except Exception as exc:  # noqa: BLE001 - any failure means no queue samples
                    self._values = None
                    if now - self._warned_at >= 60:
                        self._warned_at = now
                        log.warning("metrics: reading the queue state failed (%s)", type(exc).__name__)
                self._at = now
            return self._values

    def describe(self) -> Iterable[Any]:
        return self._families(None)

    def collect(self) -> Iterable[Any]:
        return self._families(self.values())

    @staticmethod
    def _families(values: Mapping[str, float] | None) -> Iterator[Any]:
        up = GaugeMetricFamily("webhooks_redis_up", "1 when the last scrape-time read of Redis worked.")
        up.add_metric([], 0 if values is None else 1)
        yield up
        for key, (kind, text) in QUEUE_METRICS.items():
            name = "webhooks_" + key
            family: Any = (
                CounterMetricFamily(name.removesuffix("_total"), text)
                if kind == "counter"
                else GaugeMetricFamily(name, text)
            )
            if values is not None and key in values:
                family.add_metric([], float(values[key]))
            yield family


# -- serving ---------------------------------------------------------------------------------------


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process's metrics (of all API workers in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsServer:
    """A running ``/metrics`` HTTP server (prometheus-client's) and the collectors it added."""

    def __init__(self, server: Any, thread: threading.Thread, added: list[Collector]) -> None:
        self.server = server
        self.thread = thread
        self.added = added

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for collector in self.added:
            REGISTRY.unregister(collector)


def serve(port: int, host: str, *collectors: Collector) -> MetricsServer:
    """Serve :data:`REGISTRY` (plus ``collectors``) on ``host:port`` in a daemon thread.

    Raises :class:`OSError` when the address cannot be bound.
    """
    for collector in collectors:
        REGISTRY.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError:
        for collector in collectors:
            REGISTRY.unregister(collector)
        raise
    return MetricsServer(server, thread, list(collectors))


def exposed_names(collector: Collector) -> set[str]:
    """Every series name ``collector`` exposes: a counter's ``_total``, a histogram's
    ``_bucket``/``_sum``/``_count``, a gauge's own name; metrics without a sample yet count too."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
    names: set[str] = set()
    for family in collector.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names
