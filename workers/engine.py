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
tenants whose primary answered are recorded at once and only the others retried. If the process
dies, its leases expire and the scheduler's :func:`webhooks.queueing.queue.tick` hands the deliveries to
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
from webhooks.intake import operational
from webhooks.models import DeliveryStatus
from webhooks.outbound import retry
from webhooks.outbound.secretbox import SecretBox
from webhooks.outbound.signing import SigningKey, parse_key
from webhooks.queueing import history, queue, reshard
from webhooks.queueing.queue import Lease, LeasedDelivery, Outcome
from webhooks.queueing.scripts import PartlyApplied
from webhooks.runtime.logs import delivery_log
from webhooks.timefmt import now_ms
from workers import observe
from workers.sender import AttemptResult, build_headers, send

log = logging.getLogger("webhooks.worker")

# A lease is used for sending only while it is surely unexpired: within this share of its TTL
# since it was taken or last extended.
FRESH_SHARE = 0.8
UNCHECKED = -2  # _within_rate: Redis could not be asked (neither the limit nor the revision)
MAX_HEARTBEAT_ROUNDS = 3  # heartbeat rounds in flight at once (a round may wait for a failover)


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
        self.totals = Totals()
        self._keys: dict[str, SigningKey] = {}  # sealed secret -> HMAC or Ed25519 key
        self._leases: dict[str, _LeaseState] = {}
        self._in_flight = 0
        self._fresh_until: dict[str, float] = {}  # lease id -> until when it surely is still ours
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffer: list[Outcome] = []
        self._finished: list[tuple[str, str]] = []  # (tenant, lease id)
        self._writing: list[tuple[str, str]] = []  # finished leases the writer holds (heartbeated too)
        self._background: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_wanted: asyncio.Event | None = None
        self._closing = False

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
        self._flush_wanted = asyncio.Event()
        self._background = [
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]

    def request_stop(self) -> None:
        """Stop leasing and hand back what is leased but unsent; safe from any thread (a signal handler)."""
        self.stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_stopped)

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
        self._fresh_until[lease.id] = time.monotonic() + FRESH_SHARE * self.cfg.lease_ttl_s
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

    @staticmethod
    def _unsent(
        d: LeasedDelivery, lease_id: str, *, due_ms: int | None = None, back: bool = False
    ) -> Outcome:
        """Not sent, no attempt counted: due again at ``due_ms``, or ``back`` at the head of its list."""
        return Outcome(
            d.id,
            lease_id,
            "pending",
            d.attempt_count,
            d.series_attempts,
            d.tenant_id,
            d.endpoint_id,
            due_ms=due_ms,
            back=back,
        )

    def _later(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Back to waiting: it comes round again after ``defer_s``."""
        return self._unsent(d, lease_id, due_ms=self.clock() + int(self.cfg.defer_s * 1000))

    def _back(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Handed back unsent (the worker is stopping, or the endpoint changed): to the head of its
        ready list."""
        return self._unsent(d, lease_id, back=True)

    def _changed(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        """Handed back unsent: its endpoint changed since the lease read it. Leased again, it goes
        out under the new settings (or ends dead without an attempt if deleted or disabled)."""
        self.totals.changed += 1
        return self._back(d, lease_id)

    async def _attempt(self, d: LeasedDelivery, lease_id: str) -> Outcome:
        if self.stopping:
            return self._back(d, lease_id)
        if time.monotonic() > self._fresh_until.get(lease_id, 0.0):
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
        now = self.clock()
        classified = retry.classify(result.status_code, result.retry_after, now)
        series = d.series_attempts + 1
        decision = retry.decide(classified, series, self.cfg.schedule, now, self.rng)
        if decision.status is DeliveryStatus.SUCCEEDED:
            self.totals.succeeded += 1
        else:
            self.totals.failed += 1
        pause_ms = None
        if classified.retry_after_s is not None and decision.due_ms is not None:
            pause_ms = decision.due_ms  # the receiver asked the whole endpoint to wait
        return Outcome(
            d.id,
            lease_id,
            decision.status,
            d.attempt_count + 1,
            series,
            d.tenant_id,
            d.endpoint_id,
            attempt=history.attempt_line(
                at_ms or now, result.status_code, result.duration_ms, result.error, result.excerpt
            ),
            due_ms=decision.due_ms,
            gone=decision.disable_endpoint,
            status_code=result.status_code,
            ok=decision.status is DeliveryStatus.SUCCEEDED,
            throttle=retry.is_throttle(result.status_code, result.retry_after),
            pause_ms=pause_ms,
            error=result.error,
        )

    # -- recording --------------------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        state = self._leases[outcome.lease_id]
        state.outstanding -= 1
        if state.outstanding == 0:
            self._lease_done(state.lease)
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    def _lease_done(self, lease: Lease) -> None:
        self._finished.append((lease.tenant_id, lease.id))
        del self._leases[lease.id]
        observe.lease_released()
        self._fresh_until.pop(lease.id, None)

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
                assert self._wake is not None
                self._wake.set()  # slots were given back: leasing may go on
            if self._closing and not self._buffer and not self._finished:
                return

    async def _write(self, outcomes: list[Outcome], finished: list[tuple[str, str]]) -> None:
        """Record until written. Tenants whose write failed while others' went through (a cluster
        primary failing over) are retried alone; their finished leases keep their heartbeat."""
        delay_s = 0.1
        self._writing = finished
        while True:
            try:
                done = await queue.complete(
                    self.r,
                    outcomes,
                    finished,
                    self.clock(),
                    self.cfg.retention_ms,
                    self.cfg.breaker,
                    ops_window_ms=self.cfg.ops_window_ms,
                    ops_skip=operational.OPERATOR_TENANT,
                )
                self._report(done)
                break
            except PartlyApplied as exc:
                self._report(exc.result)
                outcomes = [o for o in outcomes if o.tenant_id in exc.failed]
                finished = self._writing = [f for f in finished if f[0] in exc.failed]
                log.warning(
                    "recording outcomes of %d tenants failed (%s); retrying in %.1fs",
                    len(exc.failed),
                    exc,
                    delay_s,
                )
            except Exception:
                log.exception("recording %d outcomes failed; retrying in %.1fs", len(outcomes), delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
        self._writing = []

    def _report(self, done: queue.Completed) -> None:
        if done.breakers_opened:
            log.warning(
                "%d endpoint breakers opened: their deliveries wait for a probe", done.breakers_opened
            )
        for tenant_id, endpoint_id, reason in done.disabled:
            log.warning("endpoint %s of tenant %s disabled: %s", endpoint_id, tenant_id, reason)

    async def _heartbeat_loop(self) -> None:
        """Extend every lease held each third of the TTL. Each round runs on its own, so one that
        waits for an unreachable primary (a cluster failing over) does not hold back the next
        rounds, which extend the other primaries' leases meanwhile."""
        period_s = self.cfg.lease_ttl_s / 3
        rounds: set[asyncio.Task[None]] = set()
        try:
            while True:
                await asyncio.sleep(period_s)
                held = [(s.lease.tenant_id, lease_id) for lease_id, s in self._leases.items()]
                # Done but not recorded yet (the writer may be waiting for a primary that is
                # failing over): a reclaim would send them again.
                held += self._writing + self._finished
                if not held or len(rounds) >= MAX_HEARTBEAT_ROUNDS:
                    continue
                task = asyncio.create_task(self._heartbeat(held))
                rounds.add(task)
                task.add_done_callback(rounds.discard)
        finally:
            for task in list(rounds):
                task.cancel()

    async def _heartbeat(self, held: list[tuple[str, str]]) -> None:
        sent_at = time.monotonic()
        failed: set[str] = set()
        try:
            expiry_ms = self.clock() + int(self.cfg.lease_ttl_s * 1000)
            gone = set(await queue.heartbeat(self.r, held, expiry_ms))
        except PartlyApplied as exc:
            log.warning("lease heartbeat of %d tenants failed: %s", len(exc.failed), exc)
            gone, failed = set(exc.result), exc.failed
        except Exception:
            log.exception("lease heartbeat failed")
            return
        fresh_until = sent_at + FRESH_SHARE * self.cfg.lease_ttl_s
        for tenant_id, lease_id in held:
            if lease_id in self._fresh_until and tenant_id not in failed:
                self._fresh_until[lease_id] = (
                    0.0 if lease_id in gone else max(fresh_until, self._fresh_until[lease_id])
                )
        expired = [lease_id for lease_id in gone if lease_id in self._leases]  # not just released
        if expired:
            log.warning(
                "%d leases expired while held (a stall?): their unsent deliveries stay unsent",
                len(expired),
            )

    # -- shutdown ---------------------------------------------------------------------------------

    async def idle(self) -> None:
        """Wait until nothing is in flight and every outcome is written."""
        while self._in_flight or self._buffer or self._finished or self._leases:
            await self._wait(0.05)

    async def shutdown(self) -> None:
        """Stop leasing, hand back what is unsent, let requests in flight finish (bounded by their
        timeout), write every outcome."""
        self.stopping = True
        if not self._background:
            return
        self._wake_stopped()
        await self.idle()
        self._closing = True
        assert self._flush_wanted is not None
        self._flush_wanted.set()
        flusher, beater = self._background
        await flusher
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)
