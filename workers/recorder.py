"""The engine's recorder: it writes outcomes in batches and keeps the leases held alive.

One :class:`Recorder` per :class:`workers.engine.Engine`, on the same event loop, runs two
background tasks. The *writer* gathers outcomes (and finished leases) for a moment and records
them with :func:`webhooks.queueing.queue.complete`, one script per tenant; a Redis error is
retried until the write succeeds (on a Redis Cluster only the tenants whose primary failed are
retried), and the outcomes stay in memory meanwhile. The *heartbeat* extends every lease held,
finished-but-unwritten ones included, each third of the TTL (:func:`webhooks.queueing.queue.heartbeat`),
and keeps :attr:`Recorder.fresh_until`: until when each lease is surely still ours, which the
engine checks before it sends anything.
"""

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from webhooks.intake import operational
from webhooks.queueing import queue
from webhooks.queueing.queue import Breaker, Outcome
from webhooks.queueing.scripts import PartlyApplied

log = logging.getLogger("webhooks.worker")

# A lease is used for sending only while it is surely unexpired: within this share of its TTL
# since it was taken or last extended.
FRESH_SHARE = 0.8
MAX_HEARTBEAT_ROUNDS = 3  # heartbeat rounds in flight at once (a round may wait for a failover)


class Recorder:
    def __init__(
        self,
        r: "Redis",
        clock: Callable[[], int],
        lease_ttl_s: float,
        *,
        held: Callable[[], list[tuple[str, str]]],
        is_held: Callable[[str], bool],
        written: Callable[[], None],
        flush_max: int,
        retention_ms: int,
        breaker: Breaker,
        ops_window_ms: int,
    ) -> None:
        """``held``: the engine's leases still sending, as ``(tenant, lease id)``; ``is_held``:
        whether a lease is among them; ``written``: called after each write (slots were freed)."""
        self.r = r
        self.clock = clock
        self.lease_ttl_s = lease_ttl_s
        self._held = held
        self._is_held = is_held
        self._written = written
        self.flush_max = flush_max
        self.retention_ms = retention_ms
        self.breaker = breaker
        self.ops_window_ms = ops_window_ms
        self.fresh_until: dict[str, float] = {}  # lease id -> until when it surely is still ours
        self._buffer: list[Outcome] = []
        self._finished: list[tuple[str, str]] = []  # (tenant, lease id)
        self._writing: list[tuple[str, str]] = []  # finished leases the writer holds (heartbeated too)
        self._flush_wanted: asyncio.Event | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> list[asyncio.Task[None]]:
        """Start the writer and the heartbeat on the running loop; returns their tasks."""
        self._flush_wanted = asyncio.Event()
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._heartbeat_loop())]
        return self._tasks

    @property
    def pending(self) -> bool:
        """Whether some outcome or finished lease is not written yet."""
        return bool(self._buffer or self._finished)

    def add(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        assert self._flush_wanted is not None
        self._flush_wanted.set()

    def lease_finished(self, tenant_id: str, lease_id: str) -> None:
        """Every delivery of the lease has its outcome: release it with the next write."""
        self._finished.append((tenant_id, lease_id))
        self.fresh_until.pop(lease_id, None)

    async def close(self) -> None:
        """Write what is left, then stop the writer and the heartbeat."""
        if not self._tasks:
            return
        self._closing = True
        assert self._flush_wanted is not None
        self._flush_wanted.set()
        flusher, beater = self._tasks
        await flusher
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)

    # -- the writer -------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._flush_wanted is not None
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            if not self._closing and len(self._buffer) < self.flush_max:
                await asyncio.sleep(0.002)  # let a few more outcomes join this write
            outcomes, self._buffer = self._buffer, []
            finished, self._finished = self._finished, []
            if outcomes or finished:
                await self._write(outcomes, finished)
                self._written()
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
                    self.retention_ms,
                    self.breaker,
                    ops_window_ms=self.ops_window_ms,
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

    # -- the heartbeat ----------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Extend every lease held each third of the TTL. Each round runs on its own, so one that
        waits for an unreachable primary (a cluster failing over) does not hold back the next
        rounds, which extend the other primaries' leases meanwhile."""
        period_s = self.lease_ttl_s / 3
        rounds: set[asyncio.Task[None]] = set()
        try:
            while True:
                await asyncio.sleep(period_s)
                held = self._held()
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
            expiry_ms = self.clock() + int(self.lease_ttl_s * 1000)
            gone = set(await queue.heartbeat(self.r, held, expiry_ms))
        except PartlyApplied as exc:
            log.warning("lease heartbeat of %d tenants failed: %s", len(exc.failed), exc)
            gone, failed = set(exc.result), exc.failed
        except Exception:
            log.exception("lease heartbeat failed")
            return
        fresh_until = sent_at + FRESH_SHARE * self.lease_ttl_s
        for tenant_id, lease_id in held:
            if lease_id in self.fresh_until and tenant_id not in failed:
                self.fresh_until[lease_id] = (
                    0.0 if lease_id in gone else max(fresh_until, self.fresh_until[lease_id])
                )
        expired = [lease_id for lease_id in gone if self._is_held(lease_id)]  # not just released
        if expired:
            log.warning(
                "%d leases expired while held (a stall?): their unsent deliveries stay unsent",
                len(expired),
            )
