"""The scheduler: due retries back to ready, expired leases reclaimed, drain jobs kept queued.

Any number may run (standalone or embedded in workers); a lock in Redis lets
one act at a time and passes to another within ``LOCK_TTL_MS`` when the
holder dies. Every step is an idempotent script, so an overlap at hand-over is
harmless.
"""

import asyncio
import logging
import os
import secrets
import time

import redis
from redis.asyncio import Redis
from rq import Queue

from webhooks import keys, queue
from workers import jobs

log = logging.getLogger("webhooks.scheduler")

TICK_S = 0.05
TRIM_EVERY_S = 60.0
LOCK_TTL_MS = 3000
JOB_TIMEOUT_PAD_S = 120

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class Scheduler:
    def __init__(
        self,
        r: "Redis",
        rq_conn: "redis.Redis",
        request_timeout_s: float,
        retention_ms: int = queue.DEFAULT_RETENTION_MS,
    ) -> None:
        self.r = r
        self.rq_queue = Queue(keys.RQ_QUEUE, connection=rq_conn)
        self.owner = f"{os.getpid()}:{secrets.token_hex(4)}"
        self.job_timeout_s = int(jobs.DRAIN_BUDGET_S + 2 * request_timeout_s + JOB_TIMEOUT_PAD_S)
        self._renew = r.register_script(_RENEW)
        self.retention_ms = retention_ms
        self.stop = asyncio.Event()
        self.active = False
        self._next_trim = 0.0

    async def holds_lock(self) -> bool:
        return bool(await self._renew(keys=[keys.SCHEDULER_LOCK], args=[self.owner, LOCK_TTL_MS]))

    async def tick(self, now: int) -> None:
        while await queue.promote(self.r, now) >= 1000:
            pass
        n_leases, n_deliveries = await queue.reclaim(self.r, now)
        if n_leases:
            log.warning("reclaimed %d expired leases: %d deliveries back on ready", n_leases, n_deliveries)
        if time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + TRIM_EVERY_S
            dropped = await queue.trim(self.r, now - self.retention_ms)
            if dropped:
                log.info("retention: dropped %d index entries older than the retention period", dropped)
        if await self.r.llen(keys.READY) and self.rq_queue.count == 0:
            self.rq_queue.enqueue(
                jobs.drain,
                jobs.DRAIN_BUDGET_S,
                job_timeout=self.job_timeout_s,
                result_ttl=0,
                failure_ttl=3600,
            )

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                held = await self.holds_lock()
                if held != self.active:
                    self.active = held
                    log.info("scheduler %s %s", self.owner, "active" if held else "standing by")
                if held:
                    await self.tick(now_ms())
            except Exception:
                log.exception("scheduler tick failed")
                await asyncio.sleep(1)
            try:
                await asyncio.wait_for(self.stop.wait(), TICK_S if self.active else 1.0)
            except TimeoutError:
                pass
        if self.active:
            await self.r.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) end return 0",
                1,
                keys.SCHEDULER_LOCK,
                self.owner,
            )
