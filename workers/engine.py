"""The drain loop: lease ready deliveries, send them concurrently, record outcomes in batches.

One :class:`Engine` lives per worker process, on that process's persistent
event loop, and keeps its HTTP connection pool across drains. A drain
(:meth:`Engine.drain`) keeps up to ``concurrency`` requests in flight,
at most ``endpoint_concurrency`` per endpoint, leases more work as slots free
up, and writes outcomes in one script call per flush. It stops leasing when its
budget is spent, when ``ready`` stays empty for ``idle_exit_s``, or when asked to
stop, and returns after every leased delivery's outcome is recorded.

Failure behaviour: a Redis error while recording is retried until it succeeds
(the outcomes stay in memory, the leases keep their heartbeat); if the process
dies, its leases expire and :func:`webhooks.queue.reclaim` hands the deliveries
to another worker: at least once, never lost.
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
from webhooks.queue import Lease, LeasedDelivery, Outcome
from webhooks.secretbox import SecretBox
from webhooks.signing import secret_key_bytes
from webhooks.timefmt import iso_from_ms
from workers.sender import AttemptResult, build_headers, send

log = logging.getLogger("webhooks.worker")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    schedule: tuple[float, ...]
    request_timeout_s: float = 15.0
    concurrency: int = 512
    endpoint_concurrency: int = 64
    lease_ttl_s: float = 10.0
    lease_batch: int = 200
    flush_max: int = 500
    idle_exit_s: float = 1.0
    defer_s: float = 1.0


@dataclass(slots=True)
class DrainStats:
    leased: int = 0
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


def now_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    def __init__(
        self,
        r: "Redis",
        client: httpx.AsyncClient,
        box: SecretBox,
        config: EngineConfig,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.r = r
        self.client = client
        self.box = box
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.stopping = False
        self._keys: dict[str, bytes] = {}  # sealed secret -> HMAC key

    # -- one drain --------------------------------------------------------------------------

    async def drain(self, budget_s: float) -> DrainStats:
        d = _Drain(self, budget_s)
        return await d.run()

    def signing_keys(self, endpoint_doc: dict[str, Any], at_ms: int) -> list[bytes]:
        out = []
        for s in endpoint_doc.get("secrets", []):
            if s["exp"] is not None and s["exp"] <= at_ms:
                continue
            key = self._keys.get(s["s"])
            if key is None:
                key = self._keys[s["s"]] = secret_key_bytes(self.box.open(s["s"]))
            out.append(key)
        return out


class _Drain:
    def __init__(self, engine: Engine, budget_s: float) -> None:
        self.e = engine
        self.cfg = engine.config
        self.deadline = time.monotonic() + budget_s
        self.stats = DrainStats()
        self.leases: dict[str, _LeaseState] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.buffer: list[Outcome] = []
        self.finished: list[str] = []
        self.wake = asyncio.Event()  # a slot freed up
        self.flush_wanted = asyncio.Event()
        self.closing = False

    async def run(self) -> DrainStats:
        flusher = asyncio.create_task(self._flush_loop())
        beater = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._lease_loop()
            while self.in_flight or any(ep.waiting for ep in self.endpoints.values()):
                self.wake.clear()
                await self.wake.wait()
        finally:
            self.closing = True
            self.flush_wanted.set()
            await flusher
            beater.cancel()
            await asyncio.gather(beater, return_exceptions=True)
        return self.stats

    async def _lease_loop(self) -> None:
        idle_since: float | None = None
        poll_s = 0.005
        while not self.e.stopping and time.monotonic() < self.deadline:
            free = self.cfg.concurrency - self.in_flight
            if free < min(self.cfg.lease_batch, max(1, self.cfg.concurrency // 4)) and self.in_flight:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                lease = await queue.lease(
                    self.e.r,
                    min(free, self.cfg.lease_batch),
                    int(self.cfg.lease_ttl_s * 1000),
                    self.e.clock(),
                )
            except Exception:
                log.exception("leasing failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if lease is None:
                if self.in_flight == 0 and not self.buffer:
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if now - idle_since >= self.cfg.idle_exit_s:
                        return
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), poll_s)
                except TimeoutError:
                    pass
                poll_s = min(poll_s * 2, 0.05)
                continue
            idle_since = None
            poll_s = 0.005
            self._start_lease(lease)

    def _start_lease(self, lease: Lease) -> None:
        self.stats.leased += len(lease.deliveries)
        self.leases[lease.id] = _LeaseState(lease, len(lease.deliveries))
        if not lease.deliveries:
            self._lease_done(lease.id)
            return
        for d in lease.deliveries:
            ep = self.endpoints.setdefault(d.endpoint_id, _Endpoint())
            if ep.in_flight < self.cfg.endpoint_concurrency:
                self._launch(d, lease.id, ep)
            elif len(ep.waiting) < self.cfg.endpoint_concurrency:
                ep.waiting.append((d, lease.id))
            else:
                self._defer(d, lease.id)

    def _launch(self, d: LeasedDelivery, lease_id: str, ep: _Endpoint) -> None:
        ep.in_flight += 1
        self.in_flight += 1
        task = asyncio.create_task(self._deliver(d, lease_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _defer(self, d: LeasedDelivery, lease_id: str) -> None:
        """The endpoint is saturated: hand the delivery back for a little later, no attempt counted."""
        self.stats.deferred += 1
        delay_ms = int(self.cfg.defer_s * 1000 * self.e.rng.uniform(0.5, 1.5))
        self._record(
            Outcome(
                d.id,
                lease_id,
                "pending",
                d.attempt_count,
                d.series_attempts,
                d.tenant_id,
                d.endpoint_id,
                due_ms=self.e.clock() + delay_ms,
            )
        )

    async def _deliver(self, d: LeasedDelivery, lease_id: str) -> None:
        try:
            outcome = await self._attempt(d, lease_id)
        except Exception as exc:
            log.exception("delivery %s failed unexpectedly; scheduling a retry", d.id)
            outcome = self._outcome(
                d, lease_id, AttemptResult(None, 0, error=f"internal error: {type(exc).__name__}")
            )
        self._record(outcome)
        ep = self.endpoints[d.endpoint_id]
        ep.in_flight -= 1
        self.in_flight -= 1
        if ep.waiting and not self.e.stopping:
            nd, nl = ep.waiting.popleft()
            self._launch(nd, nl, ep)
        self.wake.set()

    async def _attempt(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        lease = self.leases[lease_id].lease
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
            log.info("delivery %s is dead without an attempt: %s", d.id, reason)
            return Outcome(
                d.id, lease_id, "dead", d.attempt_count, d.series_attempts, d.tenant_id, d.endpoint_id
            )
        body = event["body"].encode()
        at_ms = self.e.clock()
        try:
            keys = self.e.signing_keys(doc, at_ms)
        except ConfigError as exc:
            return self._outcome(d, lease_id, AttemptResult(None, 0, error=f"cannot sign: {exc}"))
        headers = build_headers(doc.get("headers") or {}, d.event_id, at_ms // 1000, body, keys)
        result = await send(self.e.client, doc["url"], headers, body, self.cfg.request_timeout_s)
        self.stats.attempted += 1
        return self._outcome(d, lease_id, result, at_ms)

    def _outcome(
        self, d: LeasedDelivery, lease_id: str, result: AttemptResult, at_ms: int | None = None
    ) -> Outcome:
        now = self.e.clock()
        classified = retry.classify(result.status_code, result.retry_after, now)
        series = d.series_attempts + 1
        decision = retry.decide(classified, series, self.cfg.schedule, now, self.e.rng)
        if decision.status == "succeeded":
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1
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

    def _record(self, outcome: Outcome) -> None:
        self.buffer.append(outcome)
        state = self.leases[outcome.lease_id]
        state.outstanding -= 1
        if state.outstanding == 0:
            self._lease_done(outcome.lease_id)
        self.flush_wanted.set()

    def _lease_done(self, lease_id: str) -> None:
        self.finished.append(lease_id)
        del self.leases[lease_id]
        self.flush_wanted.set()

    async def _flush_loop(self) -> None:
        while True:
            await self.flush_wanted.wait()
            self.flush_wanted.clear()
            if not self.closing and len(self.buffer) < self.cfg.flush_max:
                await asyncio.sleep(0.002)  # let a few more outcomes join this write
            outcomes, self.buffer = self.buffer, []
            finished, self.finished = self.finished, []
            if outcomes or finished:
                await self._write(outcomes, finished)
            if self.closing and not self.buffer and not self.finished:
                return

    async def _write(self, outcomes: list[Outcome], finished: list[str]) -> None:
        delay_s = 0.1
        while True:
            try:
                await queue.complete(self.e.r, outcomes, finished, self.e.clock())
                return
            except Exception:
                log.exception("recording %d outcomes failed; retrying in %.1fs", len(outcomes), delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _heartbeat_loop(self) -> None:
        period_s = self.cfg.lease_ttl_s / 3
        while True:
            await asyncio.sleep(period_s)
            if self.leases:
                try:
                    await queue.heartbeat(
                        self.e.r, list(self.leases), self.e.clock() + int(self.cfg.lease_ttl_s * 1000)
                    )
                except Exception:
                    log.exception("lease heartbeat failed")
