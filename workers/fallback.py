"""Delivering while RQ's Redis is unreachable.

A worker takes its turns through RQ jobs (:mod:`workers.jobs`), but the jobs are only triggers:
every delivery's state is on the platform's Redis. When RQ has a Redis of its own
(``WEBHOOKS_RQ_REDIS_URL`` or ``WEBHOOKS_RQ_REDIS_SENTINELS``) that Redis may hang or die while
the platform's is fine. :class:`RqWatch` is a thread that PINGs RQ's Redis every ``CHECK_EVERY_S``
with a client of its own (connect and read timeouts ``PING_TIMEOUT_S``); while the PING fails it
drains the platform's queue itself, ``FALLBACK_DRAIN_S`` at a time (:meth:`Runtime.drain`, one
drain at a time with RQ's jobs), and once RQ answers again it leaves the turns to RQ's jobs.

Meanwhile RQ's own loop in the main thread is stuck at most its read timeout on a hung server, or
ends at once on a dead one, and :func:`workers.process.run_worker` waits for RQ and starts it
again: nothing of the delivery waits for it.
"""

import logging
import threading

import redis

from workers import runtime

log = logging.getLogger("webhooks.worker")

CHECK_EVERY_S = 1.0
PING_TIMEOUT_S = 1.0
FALLBACK_DRAIN_S = 5.0


class RqWatch:
    """Watches RQ's Redis (through ``ping_client``); drains on ``rt`` while it does not answer."""

    def __init__(self, ping_client: "redis.Redis", rt: runtime.Runtime) -> None:
        self.r = ping_client
        self.rt = rt
        self.stop = threading.Event()
        self.down = False
        self.fallback_drains = 0
        self.thread = threading.Thread(target=self._main, name="rq-watch", daemon=True)

    def start(self) -> "RqWatch":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=FALLBACK_DRAIN_S + 5)
        self.r.close()

    def answers(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def _main(self) -> None:
        while not self.stop.is_set():
            up = self.answers()
            if up == self.down:  # a change
                self.down = not up
                if self.down:
                    log.warning("RQ's Redis does not answer: delivering without RQ's jobs meanwhile")
                else:
                    log.warning("RQ's Redis answers again: RQ's jobs take the turns again")
            if self.down and not self.rt.engine.stopping:
                try:
                    self.rt.drain(FALLBACK_DRAIN_S)
                    self.fallback_drains += 1
                except Exception:
                    log.exception("a drain without RQ failed; trying again")
                    self.stop.wait(CHECK_EVERY_S)
                continue
            self.stop.wait(CHECK_EVERY_S)
