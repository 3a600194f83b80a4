"""The delivery engine: lease ready deliveries, send them concurrently, record outcomes in batches.

One :class:`Engine` lives per worker process, on that process's persistent
event loop (a background thread, see :mod:`workers.runtime`), and keeps its
HTTP connection pool, its in-flight requests, its lease heartbeats and its
outcome writer running across RQ jobs. An RQ job calls :meth:`Engine.drain`,
which *leases* work for up to ``budget_s``: it keeps up to ``concurrency``
requests in flight (at most ``endpoint_concurrency`` per endpoint, a few more
waiting; the rest of a saturated endpoint's deliveries go back to the queue for
a second, so one slow or dead receiver cannot hold the worker) and returns when
its budget is spent or ``ready`` stays empty; requests still in flight finish in
the background and their outcomes are written by the same writer.

Failure behaviour: a Redis error while recording is retried until it succeeds
(the outcomes stay in memory and the leases keep their heartbeat); if the
process dies, its leases expire and :func:`webhooks.queue.reclaim` hands the
deliveries to another worker: at least once, never lost.
"""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from webhooks import queue, retry
from webhooks.errors import ConfigError
from webhooks.logs import delivery_log
from webhooks.queue import Lease, LeasedDelivery, Outcome
from webhooks.secretbox import SecretBox
from webhooks.signing import secret_key_bytes
from webhooks.timefmt import iso_from_ms
from workers import observe
from workers.sender import AttemptResult, build_headers, send

log = logging.getLogger("webhooks.worker")

# A lease is used for sending only while it is surely unexpired: within this share of its TTL
# since it was taken or last extended.
FRESH_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class EngineConfig:
    schedule: tuple[float, ...]
    request_timeout_s: float = 15.0
    concurrency: int = 512
    endpoint_concurrency: int = 32
    lease_ttl_s: float = 10.0
    lease_batch: int = 200
    flush_max: int = 500
    idle_exit_s: float = 1.0
    defer_s: float = 1.0
    retention_ms: int = queue.DEFAULT_RETENTION_MS


@dataclass(slots=True)
class DrainStats:
    leased: int = 0
    deferred: int = 0


@dataclass(slots=True)
class Totals:
    """Counters over the engine's life (for logs and benchmarks)."""

    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    deferred: int = 0


@dataclass(slots=True)
class _LeaseState:
    lease: Lease
    outstanding: int


@dataclass(slots=True)
class _Endpoint:
    in_flight: int = 0
    waiting: deque[tuple[LeasedDelivery, str]] = field(default_factory=deque)
    deferred: int = 0  # deliveries handed back, less the attempts finished since
    per_s: float | None = None  # its rate limit
    latency_s: float | None = None  # moving average of its attempts' durations


def now_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    def __init__(
        self,
        r: "Redis",
        transport: httpx.AsyncBaseTransport,
        box: SecretBox,
        config: EngineConfig,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.r = r
        self.transport = transport
        self.box = box
        self.cfg = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.stopping = False
        self.totals = Totals()
        self._keys: dict[str, bytes] = {}  # sealed secret -> HMAC key
        self._leases: dict[str, _LeaseState] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._in_flight = 0
        self._fresh_until: dict[str, float] = {}  # lease id -> until when it surely is still ours
        self._waiting = 0  # leased deliveries queued behind their endpoint's concurrency cap
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffer: list[Outcome] = []
        self._finished: list[str] = []
        self._background: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._flush_wanted: asyncio.Event | None = None
        self._closing = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _start_background(self) -> None:
        if self._background:
            return
        self._wake = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._background = [
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]

    # -- leasing ----------------------------------------------------------------------------------

    async def drain(self, budget_s: float) -> DrainStats:
        """Lease and start deliveries for up to ``budget_s``; returns once leasing stops."""
        self._start_background()
        assert self._wake is not None
        stats = DrainStats()
        deadline = time.monotonic() + budget_s
        idle_since: float | None = None
        poll_s = 0.005
        while not self.stopping and time.monotonic() < deadline:
            # Deliveries waiting for their endpoint count too: when every endpoint is busy, new
            # work is better left on `ready`, where any worker can take it.
            free = self.cfg.concurrency - self._in_flight - self._waiting
            if free < min(self.cfg.lease_batch, max(1, self.cfg.concurrency // 4)) and self._in_flight:
                await self._wait(0.1)
                continue
            try:
                lease = await queue.lease(
                    self.r, min(free, self.cfg.lease_batch), int(self.cfg.lease_ttl_s * 1000), self.clock()
                )
            except Exception:
                log.exception("leasing failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if lease is None:
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= self.cfg.idle_exit_s:
                    break
                await self._wait(poll_s)
                poll_s = min(poll_s * 2, 0.05)
                continue
            idle_since = None
            poll_s = 0.005
            stats.leased += len(lease.deliveries)
            deferred = self._start_lease(lease)
            stats.deferred += deferred
            if deferred:
                # The queue's head belongs to saturated endpoints: lease again once something
                # finished, not at once, or the same deliveries would bounce straight back.
                await self._wait(0.05)
        return stats

    async def _wait(self, timeout_s: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            pass

    def _start_lease(self, lease: Lease) -> int:
        """Start what the endpoints' caps allow, queue a little, defer the rest; the number deferred."""
        self._leases[lease.id] = _LeaseState(lease, len(lease.deliveries))
        observe.lease_taken()
        self._fresh_until[lease.id] = time.monotonic() + FRESH_SHARE * self.cfg.lease_ttl_s
        if not lease.deliveries:
            self._lease_done(lease.id)
            return 0
        deferred = 0
        for d in lease.deliveries:
            ep = self._endpoints.get(d.endpoint_id)
            if ep is None:
                doc = lease.endpoints.get(d.endpoint_id, (None, False))[0]
                ep = self._endpoints[d.endpoint_id] = _Endpoint(per_s=(doc or {}).get("rate_limit_per_s"))
            if ep.in_flight < self.cfg.endpoint_concurrency:
                self._launch(d, lease.id, ep)
            elif len(ep.waiting) < self.cfg.endpoint_concurrency:
                ep.waiting.append((d, lease.id))
                self._waiting += 1
            else:
                self._defer(d, lease.id, ep)
                deferred += 1
        return deferred

    def _launch(self, d: LeasedDelivery, lease_id: str, ep: _Endpoint) -> None:
        ep.in_flight += 1
        self._in_flight += 1
        task = asyncio.create_task(self._deliver(d, lease_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _defer(self, d: LeasedDelivery, lease_id: str, ep: _Endpoint) -> None:
        """The endpoint is saturated: hand the delivery back for later, no attempt counted.

        The delay is about the time the endpoint needs for what this worker already holds
        for it (its recent response time times the queue ahead, divided by its concurrency;
        ``defer_s`` before any answer), between 50 ms and 30 s; for a rate-limited endpoint at
        least the backlog at its rate. A fast endpoint's overflow comes back quickly, a dead
        or throttled receiver's backlog does not churn through the queue.
        """
        self.totals.deferred += 1
        ep.deferred += 1
        ahead = (ep.in_flight + len(ep.waiting)) / self.cfg.endpoint_concurrency
        delay_s = ahead * ep.latency_s if ep.latency_s is not None else self.cfg.defer_s
        if ep.per_s:
            delay_s = max(delay_s, (ep.in_flight + len(ep.waiting) + ep.deferred) / ep.per_s)
        delay_s = min(30.0, max(0.05, delay_s))
        delay_ms = int(delay_s * 1000 * self.rng.uniform(0.75, 1.5))
        self._record(
            Outcome(
                d.id,
                lease_id,
                "pending",
                d.attempt_count,
                d.series_attempts,
                d.tenant_id,
                d.endpoint_id,
                due_ms=self.clock() + delay_ms,
            )
        )

    # -- one delivery -----------------------------------------------------------------------------

    async def _deliver(self, d: LeasedDelivery, lease_id: str) -> None:
        try:
            outcome = await self._attempt(d, lease_id)
        except Exception as exc:  # noqa: BLE001 - logged below; the delivery is retried
            delivery_log(d).exception("delivery failed unexpectedly; scheduling a retry")
            outcome = self._outcome(
                d, lease_id, AttemptResult(None, 0, error=f"internal error: {type(exc).__name__}")
            )
        self._record(outcome)
        ep = self._endpoints[d.endpoint_id]
        ep.in_flight -= 1
        self._in_flight -= 1
        ep.deferred = max(0, ep.deferred - 1)
        took_s = (outcome.attempt or {}).get("duration_ms", 0) / 1000
        ep.latency_s = took_s if ep.latency_s is None else 0.8 * ep.latency_s + 0.2 * took_s
        if ep.waiting:
            if self.stopping:
                while ep.waiting:
                    self._waiting -= 1
                    self._defer(*ep.waiting.popleft(), ep)
            else:
                self._waiting -= 1
                self._launch(*ep.waiting.popleft(), ep)
        elif ep.in_flight == 0:
            del self._endpoints[d.endpoint_id]
        assert self._wake is not None
        self._wake.set()

    async def _attempt(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        if time.monotonic() > self._fresh_until.get(lease_id, 0.0):
            # The lease may have expired (this process stalled, or Redis was unreachable): another
            # worker may hold the delivery now. Do not send it; if the lease is still ours after
            # all, the delivery simply comes back shortly.
            return Outcome(
                d.id,
                lease_id,
                "pending",
                d.attempt_count,
                d.series_attempts,
                d.tenant_id,
                d.endpoint_id,
                due_ms=self.clock() + int(self.cfg.defer_s * 1000),
            )
        lease = self._leases[lease_id].lease
        doc, disabled = lease.endpoints.get(d.endpoint_id, (None, False))
        event = lease.events.get(f"{d.tenant_id}:{d.event_id}")
        if doc is None or event is None or disabled:
            reason = (
                "endpoint deleted"
                if doc is None
                else "event missing"
                if event is None
                else "endpoint disabled"
            )
            delivery_log(d).info("delivery is dead without an attempt", reason=reason)
            return Outcome(
                d.id, lease_id, "dead", d.attempt_count, d.series_attempts, d.tenant_id, d.endpoint_id
            )
        body = event["body"].encode()
        at_ms = self.clock()
        try:
            keys = self.signing_keys(doc, at_ms)
        except ConfigError as exc:
            return self._outcome(d, lease_id, AttemptResult(None, 0, error=f"cannot sign: {exc}"))
        per_s = doc.get("rate_limit_per_s")
        if per_s:
            at_ms = await self._within_rate(d.endpoint_id, per_s)
        headers = build_headers(doc.get("headers") or {}, d.event_id, at_ms // 1000, body, keys)
        result = await send(self.transport, doc["url"], headers, body, self.cfg.request_timeout_s)
        self.totals.attempted += 1
        out = self._outcome(d, lease_id, result, at_ms)
        observe.attempt_finished(d, out.status, result, event["created_at"], self.clock())
        return out

    async def _within_rate(self, endpoint_id: str, per_s: float) -> int:
        """Wait for a slot of the endpoint's rate limit, shared by all workers through Redis;
        returns the time (ms) the slot was granted at, which the attempt is stamped with.

        The wait holds one of the endpoint's concurrency slots, so at most
        ``endpoint_concurrency`` deliveries of a throttled endpoint wait here. If Redis
        cannot be asked, the send goes ahead: a limit is a courtesy, losing no delivery is not.
        """
        while True:
            now = self.clock()
            try:
                wait_ms = await queue.take_send_slot(self.r, endpoint_id, per_s, now)
            except Exception:  # noqa: BLE001
                log.warning("rate limit check failed for endpoint %s; sending anyway", endpoint_id)
                return now
            if wait_ms <= 0:
                return now
            await asyncio.sleep(wait_ms / 1000 + self.rng.uniform(0, 0.02))

    def signing_keys(self, endpoint_doc: dict[str, Any], at_ms: int) -> list[bytes]:
        """HMAC keys of the endpoint's secrets still valid at ``at_ms``, newest first (decrypted once)."""
        out = []
        for s in endpoint_doc.get("secrets", []):
            if s["exp"] is not None and s["exp"] <= at_ms:
                continue
            key = self._keys.get(s["s"])
            if key is None:
                key = self._keys[s["s"]] = secret_key_bytes(self.box.open(s["s"]))
            out.append(key)
        return out

    def _outcome(
        self, d: LeasedDelivery, lease_id: str, result: AttemptResult, at_ms: int | None = None
    ) -> Outcome:
        now = self.clock()
        classified = retry.classify(result.status_code, result.retry_after, now)
        series = d.series_attempts + 1
        decision = retry.decide(classified, series, self.cfg.schedule, now, self.rng)
        if decision.status == "succeeded":
            self.totals.succeeded += 1
        else:
            self.totals.failed += 1
        return Outcome(
            d.id,
            lease_id,
            decision.status,
            d.attempt_count + 1,
            series,
            d.tenant_id,
            d.endpoint_id,
            attempt={
                "number": d.attempt_count + 1,
                "at": iso_from_ms(at_ms or now),
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "error": result.error,
                "response_excerpt": result.excerpt,
            },
            due_ms=decision.due_ms,
            gone=decision.disable_endpoint,
            status_code=result.status_code,
            ok=decision.status == "succeeded",
        )

    # -- recording --------------------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        state = self._leases[outcome.lease_id]
        state.outstanding -= 1
        if state.outstanding == 0:
            self._lease_done(outcome.lease_id)
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    def _lease_done(self, lease_id: str) -> None:
        self._finished.append(lease_id)
        del self._leases[lease_id]
        observe.lease_released()
        self._fresh_until.pop(lease_id, None)
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        assert self._flush_wanted is not None
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            if not self._closing and len(self._buffer) < self.cfg.flush_max:
                await asyncio.sleep(0.002)  # let a few more outcomes join this write
            outcomes, self._buffer = self._buffer, []
            finished, self._finished = self._finished, []
            if outcomes or finished:
                await self._write(outcomes, finished)
            if self._closing and not self._buffer and not self._finished:
                return

    async def _write(self, outcomes: list[Outcome], finished: list[str]) -> None:
        delay_s = 0.1
        while True:
            try:
                await queue.complete(self.r, outcomes, finished, self.clock(), self.cfg.retention_ms)
                return
            except Exception:
                log.exception("recording %d outcomes failed; retrying in %.1fs", len(outcomes), delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _heartbeat_loop(self) -> None:
        period_s = self.cfg.lease_ttl_s / 3
        while True:
            await asyncio.sleep(period_s)
            if not self._leases:
                continue
            lease_ids = list(self._leases)
            sent_at = time.monotonic()
            try:
                expiry_ms = self.clock() + int(self.cfg.lease_ttl_s * 1000)
                gone = set(await queue.heartbeat(self.r, lease_ids, expiry_ms))
            except Exception:
                log.exception("lease heartbeat failed")
                continue
            fresh_until = sent_at + FRESH_SHARE * self.cfg.lease_ttl_s
            for lease_id in lease_ids:
                if lease_id in self._fresh_until:
                    self._fresh_until[lease_id] = 0.0 if lease_id in gone else fresh_until
            if gone:
                log.warning(
                    "%d leases expired while held (a stall?): their unsent deliveries stay unsent", len(gone)
                )

    # -- shutdown ---------------------------------------------------------------------------------

    async def idle(self) -> None:
        """Wait until nothing is in flight or waiting and every outcome is written."""
        while self._in_flight or self._buffer or self._finished or self._leases:
            await self._wait(0.05)

    async def shutdown(self) -> None:
        """Stop leasing, let in-flight requests finish (bounded by their timeout), write every outcome."""
        self.stopping = True
        if not self._background:
            return
        await self.idle()
        self._closing = True
        assert self._flush_wanted is not None
        self._flush_wanted.set()
        flusher, beater = self._background
        await flusher
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)
