"""The scheduler: tenants' due work and expired leases, the memory budget, drain jobs kept queued.

Any number may run (standalone or embedded in workers); a lock in Redis lets
one act at a time and passes to another within ``LOCK_TTL_MS`` when the
holder dies. Every step is an idempotent script, so an overlap at hand-over is
harmless. Each tick it visits the tenants whose wake time has come
(:func:`webhooks.queueing.upkeep.tick`); every ``SWEEP_EVERY_S`` it sweeps all tenants
(:func:`webhooks.queueing.upkeep.repair`), which repairs an activation or wake time lost to a
crash between a tenant's script and the global call after it; every ``MEMORY_EVERY_S`` (0.2 s)
it keeps the memory budget (:mod:`webhooks.queueing.memory`). With operational webhooks on, it
creates or corrects the operator tenant when it first acts, emits every tick the notifications
whose time has come (:func:`webhooks.intake.operational.emit_due`), and its sweep marks due any
tenant still holding some (:func:`webhooks.intake.operational.rescan`).

RQ's queue is touched off the event loop: keeping one ``drain`` job queued (RQ's synchronous
``count`` and ``enqueue``) runs in a thread (:func:`asyncio.to_thread`), one call at a time, on a
client with connect and read timeouts. While RQ's Redis hangs or is down that call fails or waits
on its own; the ticks go on (due retries promoted, expired leases reclaimed) and a trigger is
enqueued again at the first tick after RQ answers.

Each sweep first checks that the data format in Redis is not newer than this code
(webhooks/queueing/dataformat.py); if it is, the scheduler stops.
"""

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass

import redis
from redis.asyncio import Redis
from rq import Queue

from webhooks import keys
from webhooks.intake import operational
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import dataformat, depths, memory, queue, reshard, upkeep
from webhooks.timefmt import now_ms
from workers import jobs

log = logging.getLogger("webhooks.scheduler")

TICK_S = 0.05
TRIM_EVERY_S = 60.0
SWEEP_EVERY_S = 10.0
MEMORY_EVERY_S = 0.2
SWEEP_CHUNK = 500
TRIM_CHUNK_EVENTS = 500
TRIM_BUDGET_S = 0.3 * MEMORY_EVERY_S  # the most one memory check's trimming may take
BARREN_S = 10.0  # a tenant whose history is all pending work is trimmed again after this
LOCK_TTL_MS = 3000
JOB_TIMEOUT_PAD_S = 120

_RENEW = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    request_timeout_s: float = 15.0
    retention_ms: int = queue.DEFAULT_RETENTION_MS
    memory_high_share: float = memory.DEFAULT_HIGH_SHARE  # trim settled history above this share
    trim_dead_letters: bool = False  # may dead letters go too when memory runs short
    ops_target: operational.Target | None = None  # where operational webhooks go (None: off)
    box: SecretBox | None = None  # seals the operational webhook secret (needed with ``ops_target``)


class Scheduler:
    def __init__(
        self, r: "Redis", rq_conn: "redis.Redis", config: SchedulerConfig = SchedulerConfig()
    ) -> None:
        self.r = r
        self.rq_queue = Queue(keys.RQ_QUEUE, connection=rq_conn)
        self.owner = f"{os.getpid()}:{secrets.token_hex(4)}"
        self.job_timeout_s = int(jobs.DRAIN_BUDGET_S + 2 * config.request_timeout_s + JOB_TIMEOUT_PAD_S)
        self._renew = r.register_script(_RENEW)
        self.retention_ms = config.retention_ms
        self.memory_high_share = config.memory_high_share
        self.trim_dead_letters = config.trim_dead_letters
        self.ops_target = config.ops_target
        self.box = config.box or SecretBox(None)
        self._operator_ready = False
        self.memory_level = "ok"
        self.stop = asyncio.Event()
        self.active = False
        self._next_trim = 0.0
        self._next_sweep = 0.0
        self._next_memory = 0.0
        self._sweep: list[str] = []
        self._barren: dict[str, float] = {}  # tenant -> until when a trim pass is not worth it
        self._trigger: asyncio.Task[None] | None = None  # the RQ call in its thread, if one runs
        self.rq_down = False

    async def holds_lock(self) -> bool:
        return bool(await self._renew(keys=[keys.SCHEDULER_LOCK], args=[self.owner, LOCK_TTL_MS]))

    async def tick(self, now: int) -> None:
        while True:
            due = await upkeep.due_tenants(self.r, now)
            done = await upkeep.tick(self.r, due, now)
            if done.leases:
                log.warning(
                    "reclaimed %d expired leases: %d deliveries back on their ready lists",
                    done.leases,
                    done.reclaimed,
                )
            if len(due) < 200:
                break
        await upkeep.retire_idle(self.r)
        mono = time.monotonic()
        if mono >= self._next_sweep:
            newer = dataformat.newer_than_code(await self.r.get(keys.DATA_FORMAT))
            if newer:  # a newer release converted the data while this scheduler ran
                log.error("stopping: %s", newer)
                self.stop.set()
                return
            if not self._sweep:
                self._sweep = await depths.tenant_ids(self.r)
            chunk, self._sweep = self._sweep[:SWEEP_CHUNK], self._sweep[SWEEP_CHUNK:]
            repaired = await upkeep.repair(self.r, chunk, now)
            if repaired:
                log.warning("sweep: %d tenants with work were missing from the active list", repaired)
            if self.ops_target:
                await operational.rescan(self.r, chunk, now)
            if not self._sweep:
                self._next_sweep = mono + SWEEP_EVERY_S
        if mono >= self._next_trim:
            self._next_trim = mono + TRIM_EVERY_S
            await upkeep.trim(self.r, await depths.tenant_ids(self.r), now - self.retention_ms)
        if self.ops_target:
            await self.emit_operational(now, self.ops_target)
        if mono >= self._next_memory:
            self._next_memory = mono + MEMORY_EVERY_S
            await self.keep_memory_budget(now)
        if await self.r.llen(keys.ACTIVE) and (self._trigger is None or self._trigger.done()):
            self._trigger = asyncio.create_task(self._keep_triggered())

    async def _keep_triggered(self) -> None:
        """One ``drain`` job queued on RQ's Redis, the blocking calls in a thread; an RQ Redis that
        fails or times out is logged at the change, and tried again at a later tick."""
        try:
            await asyncio.to_thread(self._enqueue_unless_queued)
        except redis.RedisError as exc:
            if not self.rq_down:
                log.warning("RQ's Redis does not answer (%s): no triggers until it does", type(exc).__name__)
            self.rq_down = True
            return
        except Exception:  # anything else RQ raises is logged here, not lost in an unawaited task
            log.exception("enqueuing a drain job failed")
            return
        if self.rq_down:
            log.warning("RQ's Redis answers again: triggers resume")
        self.rq_down = False

    def _enqueue_unless_queued(self) -> None:
        if self.rq_queue.count == 0:
            self.rq_queue.enqueue(
                jobs.drain,
                jobs.DRAIN_BUDGET_S,
                job_timeout=self.job_timeout_s,
                result_ttl=0,
                failure_ttl=3600,
            )

    async def emit_operational(self, now: int, target: operational.Target) -> None:
        """Make sure the operator tenant exists (once), then send the notifications now due."""
        if not self._operator_ready:
            if await operational.ensure(self.r, self.box, target, now):
                log.info("operational webhooks: the operator endpoint now points at the configured URL")
            self._operator_ready = True
        sent = await operational.emit_due(self.r, now, target.window_ms, self.retention_ms)
        if sent:
            log.info("operational webhooks: %d events queued", sent)

    async def keep_memory_budget(self, now: int) -> None:
        """Above the high watermark, drop settled history oldest first; publish the level."""
        use = await memory.usage(self.r)
        history_left = True
        high = self.memory_high_share
        if use.max_bytes and (
            use.share >= high or (self.memory_level != "ok" and use.share >= high - memory.LOW_GAP)
        ):
            history_left = await self._trim_history(now, use)
            use = await memory.usage(self.r)
        lvl = memory.level(
            use, self.memory_level, high_share=self.memory_high_share, history_left=history_left
        )
        if lvl != self.memory_level:
            log.warning(
                "memory %s: %d of %d bytes used (%.0f%%)", lvl, use.used_bytes, use.max_bytes, 100 * use.share
            )
            self.memory_level = lvl
        await memory.publish(self.r, lvl, use, now, high_share=self.memory_high_share)

    async def _trim_history(self, now: int, use: memory.Usage) -> bool:
        """Trim the tenants with the oldest history first until under the low watermark (at most
        ``TRIM_BUDGET_S`` of work); False when no settled history is left to drop."""
        tenants = await depths.tenant_ids(self.r)
        async with self.r.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.zrange(keys.events(t), 0, 0, withscores=True)
            oldest = await pipe.execute()
        mono = time.monotonic()
        order = sorted(
            (row[0][1], t)
            for t, row in zip(tenants, oldest, strict=True)
            if row and self._barren.get(t, 0.0) <= mono
        )
        live = [t for _, t in order]
        low = (self.memory_high_share - memory.LOW_GAP) * use.max_bytes
        dropped = 0
        deadline = time.monotonic() + TRIM_BUDGET_S
        while live and time.monotonic() < deadline:
            done = await upkeep.trim(
                self.r,
                live[:50],
                now - self.retention_ms,
                most=TRIM_CHUNK_EVENTS,
                allow_dead=self.trim_dead_letters,
                now_ms=now,
            )
            dropped += done.events
            if not done.events:  # a whole pass of pending work: look again in a while
                self._barren.update((t, mono + BARREN_S) for t in done.exhausted)
            live = [t for t in live if t not in done.exhausted]
            if (await memory.usage(self.r)).used_bytes < low:
                break
        if dropped:
            log.info("memory budget: dropped %d settled events, oldest first", dropped)
        return bool(live) or dropped > 0

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                held = await self.holds_lock()
                if held != self.active:
                    self.active = held
                    log.info("scheduler %s %s", self.owner, "active" if held else "standing by")
                if held:
                    await self.tick(now_ms())
            except Exception as exc:
                if reshard.is_paused(exc):  # a tenant's slot is moving (its trim, say): again soon
                    log.info("a tenant whose slot is moving was skipped this tick")
                    await asyncio.sleep(0.05)
                else:
                    log.exception("scheduler tick failed")
                    await asyncio.sleep(1)
            try:
                await asyncio.wait_for(self.stop.wait(), TICK_S if self.active else 1.0)
            except TimeoutError:
                pass
        if self._trigger is not None and not self._trigger.done():
            await asyncio.wait({self._trigger}, timeout=1.0)  # a hung RQ call is left to its thread
        if self.active:
            await self.r.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) end return 0",
                1,
                keys.SCHEDULER_LOCK,
                self.owner,
            )
