"""The delivery engine: lease fairly, send concurrently, record outcomes in batches.

One :class:`Engine` lives per worker process, on that process's persistent
event loop (a background thread, see :mod:`workers.runtime`), and keeps its
HTTP connection pool, its in-flight requests, its lease heartbeats and its
outcome writer running across RQ jobs. An RQ job calls :meth:`Engine.drain`,
which *leases* work for up to ``budget_s``: it takes the next tenant of the
round robin (:func:`webhooks.queueing.queue.next_tenant`) and leases from it at most
``tenant_quantum`` deliveries, which Redis already limited to what each
endpoint's ``max_in_flight`` allows across all workers, so every leased
delivery starts at once and none is handed back for lack of room. It keeps up
to ``concurrency`` requests in flight and returns when its budget is spent or
no tenant has work; requests still in flight finish in the background and
their outcomes are written by the same writer.

Shutdown (SIGTERM, :meth:`Engine.request_stop`): leasing stops at once; requests already sent
finish (bounded by ``request_timeout_s``) and their outcomes are written; a leased delivery not
sent yet (waiting for its endpoint's rate limit, or not started) is *handed back* at once: an
outcome ``back`` puts it at the head of its endpoint's ready list, for another worker to take
now rather than after the lease expires.

Endpoint changes apply at once, to deliveries already leased too. A lease carries a copy of its
endpoints' documents and each one's revision (field ``rev`` of the endpoint hash, bumped by every
endpoint write in the same step; :attr:`webhooks.queueing.queue.Lease.revisions`). Nothing is sent on a
copy that may be stale: a copy is used as it is only within ``endpoint_recheck_s`` of when it was
last known current (the lease, or the last re-check); older, the current revisions of the lease's
endpoints are read in one round trip shared by all its deliveries (rarely needed: a lease's sends
start as it arrives, unless they wait for a rate limit). A rate-limited delivery's wait ends with
:func:`webhooks.queueing.queue.take_send_slot`, which compares the revision in the same round trip and
grants no slot on a stale copy. A delivery whose endpoint changed is *handed back* unsent (outcome
``back``, to the head of its ready list) and leased again under the new settings, where a deleted
or disabled endpoint's delivery ends ``dead`` as always. docs/api.md states the bound measured.

Failure behaviour: a Redis error while recording is retried until it succeeds (the outcomes
stay in memory and the leases, recorded or not, keep their heartbeat); on a Redis Cluster, the
tenants whose primary answered are recorded at once and only the others retried (:mod:`workers.recorder`,
which also keeps the leases alive; :mod:`workers.outcomes` builds what it writes). If the process
dies, its leases expire and the scheduler's :func:`webhooks.queueing.upkeep.tick` hands the deliveries to
another worker: at least once, never lost.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from webhooks.errors import ConfigError
from webhooks.outbound.hostslots import DEFAULT_PER_HOST, HostSlots
from webhooks.outbound.secretbox import SecretBox
from webhooks.outbound.signing import SigningKey, parse_key
from webhooks.queueing import queue, reshard
from webhooks.queueing.queue import Lease, LeasedDelivery, Outcome
from webhooks.runtime.logs import delivery_log
from webhooks.timefmt import now_ms
from workers import observe, outcomes
from workers.recorder import FRESH_SHARE, Recorder
from workers.sender import AttemptResult, build_headers, send

log = logging.getLogger("webhooks.worker")

UNCHECKED = -2  # _within_rate: Redis could not be asked (neither the limit nor the revision)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    schedule: tuple[float, ...]
    request_timeout_s: float = 15.0
    concurrency: int = 512
    tenant_quantum: int = 16  # the most one visit of a tenant leases (small: docs/architecture.md)
    endpoint_quantum: int = 64  # the most one endpoint gives per visit within a tenant
    lease_ttl_s: float = 10.0
    flush_max: int = 500
    idle_exit_s: float = 1.0
    defer_s: float = 1.0
    retention_ms: int = queue.DEFAULT_RETENTION_MS
    breaker: queue.Breaker = field(default_factory=queue.Breaker)
    ops_window_ms: int = 0  # > 0: record operational notifications (webhooks.intake.operational); 0: off
    endpoint_recheck_s: float = 0.1  # a lease's endpoint copies older than this are re-checked
    max_connections_per_host: int = DEFAULT_PER_HOST  # requests open to one receiver host; 0: no bound


@dataclass(slots=True)
class DrainStats:
    leased: int = 0
    leases: int = 0


@dataclass(slots=True)
class Totals:
    """Counters over the engine's life (for logs and benchmarks)."""

    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    leased: int = 0
    rechecks: int = 0  # leases whose endpoint copies were re-read before sending (older than the bound)
    changed: int = 0  # deliveries handed back unsent because their endpoint changed while held


@dataclass(slots=True)
class _LeaseState:
    lease: Lease
    outstanding: int
    current_at: float  # monotonic time at which the lease's endpoint copies were last known current
    changed: set[str] = field(default_factory=set)  # endpoints changed since the lease read them
    recheck: "asyncio.Task[None] | None" = None  # the re-check under way, shared by its deliveries


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
        self.hosts = HostSlots(config.max_connections_per_host)
        self.totals = Totals()
        self._keys: dict[str, SigningKey] = {}  # sealed secret -> HMAC or Ed25519 key
        self._leases: dict[str, _LeaseState] = {}
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.recorder = Recorder(
            r,
            clock,
            config.lease_ttl_s,
            held=lambda: [(s.lease.tenant_id, lease_id) for lease_id, s in self._leases.items()],
            is_held=lambda lease_id: lease_id in self._leases,
            written=self._written,
            flush_max=config.flush_max,
            retention_ms=config.retention_ms,
            breaker=config.breaker,
            ops_window_ms=config.ops_window_ms,
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def leases_held(self) -> int:
        return len(self._leases)

    def _start_background(self) -> None:
        if self._background:
            return
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self.stopping:
            self._stop_event.set()
        self._background = self.recorder.start()

    def request_stop(self) -> None:
        """Stop leasing and hand back what is leased but unsent; safe from any thread (a signal handler)."""
        self.stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_stopped)

    def _written(self) -> None:
        """Outcomes were written: slots were given back, so leasing may go on."""
        if self._wake is not None:
            self._wake.set()

    def _wake_stopped(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        if self._wake is not None:
            self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when a stop is requested meanwhile."""
        assert self._stop_event is not None
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            pass

    # -- leasing ----------------------------------------------------------------------------------

    async def drain(self, budget_s: float) -> DrainStats:
        """Lease and start deliveries for up to ``budget_s``; returns once leasing stops."""
        self._start_background()
        stats = DrainStats()
        deadline = time.monotonic() + budget_s
        idle_since: float | None = None
        poll_s = 0.005
        empty_visits = 0
        while not self.stopping and time.monotonic() < deadline:
            free = self.cfg.concurrency - self._in_flight
            if free < max(1, min(self.cfg.tenant_quantum, self.cfg.concurrency) // 4) and self._in_flight:
                await self._wait(0.1)
                continue
            try:
                asked_at = time.monotonic()  # the lease reads the endpoints after this
                tenant_id = await queue.next_tenant(self.r)
                lease = None
                if tenant_id is not None:
                    lease = await queue.lease(
                        self.r,
                        tenant_id,
                        min(free, self.cfg.tenant_quantum),
                        int(self.cfg.lease_ttl_s * 1000),
                        self.clock(),
                        self.cfg.endpoint_quantum,
                    )
            except Exception as exc:
                if reshard.is_paused(exc):  # the tenant's slot is moving: on to the next tenant
                    await asyncio.sleep(0.02)
                    continue
                log.exception("leasing failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if lease is not None and lease.deliveries:
                idle_since, poll_s, empty_visits = None, 0.005, 0
                stats.leased += len(lease.deliveries)
                stats.leases += 1
                self._start_lease(lease, asked_at)
                continue
            # No tenant, or one whose endpoints are all busy or paused: try the next few tenants,
            # then wait a little (completions and the scheduler put work back).
            empty_visits += 1
            if tenant_id is not None and empty_visits < 8:
                continue
            empty_visits = 0
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since >= self.cfg.idle_exit_s:
                break
            await self._wait(poll_s)
            poll_s = min(poll_s * 2, 0.05)
        return stats

    async def _wait(self, timeout_s: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            pass

    def _start_lease(self, lease: Lease, asked_at: float) -> None:
        """Start every delivery of the lease: Redis leased only what the endpoints have room for.
        ``asked_at``: a monotonic time before the lease was asked for (its copies are current then)."""
        self._leases[lease.id] = _LeaseState(lease, len(lease.deliveries), asked_at)
        observe.lease_taken()
        self.recorder.fresh_until[lease.id] = time.monotonic() + FRESH_SHARE * self.cfg.lease_ttl_s
        self.totals.leased += len(lease.deliveries)
        for d in lease.deliveries:
            self._in_flight += 1
            task = asyncio.create_task(self._deliver(d, lease.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        self._in_flight -= 1
        assert self._wake is not None
        self._wake.set()

    def _later(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Back to waiting: it comes round again after ``defer_s``."""
        return outcomes.unsent(d, lease_id, due_ms=self.clock() + int(self.cfg.defer_s * 1000))

    def _back(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Handed back unsent (the worker is stopping, or the endpoint changed): to the head of its
        ready list."""
        return outcomes.unsent(d, lease_id, back=True)

    def _changed(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Handed back unsent: its endpoint changed since the lease read it. Leased again, it goes
        out under the new settings (or ends dead without an attempt if deleted or disabled)."""
        self.totals.changed += 1
        return self._back(d, lease_id)

    async def _attempt(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        if self.stopping:
            return self._back(d, lease_id)
        if time.monotonic() > self.recorder.fresh_until.get(lease_id, 0.0):
            # The lease may have expired (this process stalled, or Redis was unreachable): another
            # worker may hold the delivery now. Do not send it; if the lease is still ours after
            # all, the delivery simply comes back shortly.
            return self._later(d, lease_id)
        state = self._leases[lease_id]
        current = (
            True  # the lease's copy is recent and unchanged as far as known: no await on the hot path
            if d.endpoint_id not in state.changed
            and time.monotonic() - state.current_at <= self.cfg.endpoint_recheck_s
            else await self._is_current(state, d.endpoint_id)
        )
        if not current:
            # Changed since leased (or unknown: Redis did not answer): not sent on the old copy.
            return self._changed(d, lease_id) if current is False else self._later(d, lease_id)
        lease = state.lease
        doc, disabled = lease.endpoints.get(d.endpoint_id, (None, False))
        event = lease.events.get(d.event_id)
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
                d.id,
                lease_id,
                "dead",
                d.attempt_count,
                d.series_attempts,
                d.tenant_id,
                d.endpoint_id,
                error=reason,
            )
        body = event.body()
        at_ms = self.clock()
        per_s = doc.get("rate_limit_per_s")
        if per_s:
            revision = lease.revisions.get(d.endpoint_id, "0")
            granted_ms = await self._within_rate(d.tenant_id, d.endpoint_id, per_s, revision)
            if granted_ms is None:
                return self._back(d, lease_id)
            if granted_ms == queue.STALE:  # changed while waiting: no slot taken, not sent
                state.changed.add(d.endpoint_id)
                return self._changed(d, lease_id)
            if granted_ms == UNCHECKED:  # the limit could not be asked, nor so the revision
                current = await self._is_current(state, d.endpoint_id)
                if not current:
                    return self._changed(d, lease_id) if current is False else self._later(d, lease_id)
                granted_ms = self.clock()
            at_ms = granted_ms
        # A slot of the receiver's host (webhooks.outbound.hostslots): a wait for it is not the request's.
        async with self.hosts.slot(doc["url"]) as waited:
            if waited:  # time passed: stopping, or the copy stale? (no await if checked lately)
                if self.stopping:
                    return self._back(d, lease_id)
                current = await self._is_current(state, d.endpoint_id)
                if not current:
                    return self._changed(d, lease_id) if current is False else self._later(d, lease_id)
                at_ms = self.clock()
            # No await from here to the request: the copy is as current as checked above.
            try:
                keys = self.signing_keys(doc, at_ms)
            except ConfigError as exc:
                return self._outcome(d, lease_id, AttemptResult(None, 0, error=f"cannot sign: {exc}"))
            if self.stopping:
                return self._back(d, lease_id)
            headers = build_headers(doc.get("headers") or {}, d.event_id, at_ms // 1000, body, keys)
            result = await send(self.transport, doc["url"], headers, body, self.cfg.request_timeout_s)
        self.totals.attempted += 1
        out = self._outcome(d, lease_id, result, at_ms)
        observe.attempt_finished(d, out.status, result, event.created_ms, self.clock())
        return out

    async def _is_current(self, state: _LeaseState, endpoint_id: str) -> bool | None:
        """Whether the lease's copy of the endpoint is current, as of at most ``endpoint_recheck_s``
        ago; older, the lease's endpoints are re-checked (one round trip for all its deliveries).
        None when the re-check failed (Redis unreachable): not known, so not to be sent."""
        if endpoint_id in state.changed:
            return False
        if time.monotonic() - state.current_at <= self.cfg.endpoint_recheck_s:
            return True
        if state.recheck is None:
            state.recheck = asyncio.create_task(self._recheck(state))
        try:
            await asyncio.shield(state.recheck)
        except Exception:  # noqa: BLE001 - logged once by the re-check
            return None
        return endpoint_id not in state.changed

    async def _recheck(self, state: _LeaseState) -> None:
        asked_at = time.monotonic()
        lease = state.lease
        self.totals.rechecks += 1
        try:
            now = await queue.endpoint_revisions(self.r, lease.tenant_id, list(lease.revisions))
        except Exception:
            log.warning("re-checking the endpoints of a lease failed: its unsent deliveries wait")
            raise
        finally:
            state.recheck = None
        state.changed.update(e for e, rev in now.items() if rev != lease.revisions[e])
        state.current_at = max(state.current_at, asked_at)

    async def _within_rate(self, tenant_id: str, endpoint_id: str, per_s: float, revision: str) -> int | None:
        """Wait for a slot of the endpoint's rate limit, shared by all workers through Redis;
        returns the time (ms) the slot was granted at, which the attempt is stamped with, or None
        when the worker began stopping meanwhile (the delivery is handed back unsent), or
        :data:`webhooks.queueing.queue.STALE` when the endpoint's revision is no longer ``revision`` (it was
        changed: the grant is asked with the revision, so no slot is granted to a stale copy), or
        :data:`UNCHECKED` when Redis could not be asked (the caller re-checks the revision instead).

        The wait holds one of the endpoint's ``max_in_flight`` slots, so a throttled endpoint
        holds back only itself. If Redis cannot be asked, the send goes ahead: a limit is a
        courtesy, losing no delivery is not.
        """
        while True:
            if self.stopping:
                return None
            now = self.clock()
            try:
                wait_ms = await queue.take_send_slot(self.r, tenant_id, endpoint_id, per_s, now, revision)
            except Exception:  # noqa: BLE001
                log.warning("rate limit check failed for endpoint %s; sending without it", endpoint_id)
                return UNCHECKED
            if wait_ms == queue.STALE:
                return queue.STALE
            if wait_ms == 0:
                return now
            await self._pause(wait_ms / 1000 + self.rng.uniform(0, 0.02))

    def signing_keys(self, endpoint_doc: dict[str, Any], at_ms: int) -> list[SigningKey]:
        """Keys (HMAC or Ed25519) of the endpoint's secrets valid at ``at_ms``, newest first (parsed once)."""
        out = []
        for s in endpoint_doc.get("secrets", []):
            if s["exp"] is not None and s["exp"] <= at_ms:
                continue
            key = self._keys.get(s["s"])
            if key is None:
                key = self._keys[s["s"]] = parse_key(self.box.open(s["s"]))
            out.append(key)
        return out

    def _outcome(
        self, d: LeasedDelivery, lease_id: str, result: AttemptResult, at_ms: int | None = None
    ) -> Outcome:
        out = outcomes.attempted(d, lease_id, result, self.cfg.schedule, self.clock(), self.rng, at_ms)
        if out.ok:
            self.totals.succeeded += 1
        else:
            self.totals.failed += 1
        return out

    # -- recording ------------------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self.recorder.add(outcome)
        state = self._leases[outcome.lease_id]
        state.outstanding -= 1
        if state.outstanding == 0:
            self._lease_done(state.lease)

    def _lease_done(self, lease: Lease) -> None:
        self.recorder.lease_finished(lease.tenant_id, lease.id)
        del self._leases[lease.id]
        observe.lease_released()

    # -- shutdown ---------------------------------------------------------------------------------

    async def idle(self) -> None:
        """Wait until nothing is in flight and every outcome is written."""
        while self._in_flight or self.recorder.pending or self._leases:
            await self._wait(0.05)

    async def shutdown(self) -> None:
        """Stop leasing, hand back what is unsent, let requests in flight finish (bounded by their
        timeout), write every outcome."""
        self.stopping = True
        if not self._background:
            return
        self._wake_stopped()
        await self.idle()
        await self.recorder.close()
