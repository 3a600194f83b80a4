"""The RQ jobs. A job is a trigger to lease ready deliveries for a while; the deliveries' own
durable state lives in :mod:`webhooks.queueing.queue`, so a lost or duplicated job loses nothing. Each job
first checks that the data format in Redis is not newer than this code
(webhooks/queueing/dataformat.py)."""

import logging
import os
import signal

from webhooks import keys
from webhooks.queueing import dataformat
from workers import runtime

log = logging.getLogger("webhooks.worker")

DRAIN_BUDGET_S = 30.0


async def _stored_format(rt: runtime.Runtime) -> object:
    return await rt.engine.r.get(keys.DATA_FORMAT)


def drain(budget_s: float = DRAIN_BUDGET_S) -> dict[str, int]:
    """Lease and start ready deliveries for up to ``budget_s`` seconds; in-flight ones finish in the
    background on the worker's event loop. Returns counts for this drain."""
    rt = runtime.current()
    newer = dataformat.newer_than_code(rt.run(_stored_format(rt)))
    if newer:
        # A newer release converted the data while this worker ran: stop as on SIGTERM (hand back
        # nothing leased, since nothing is; finish what is in flight) instead of draining.
        log.error("stopping: %s", newer)
        os.kill(os.getpid(), signal.SIGTERM)
        return {"leased": 0, "leases": 0}
    stats = rt.drain(budget_s)
    totals = rt.engine.totals
    if stats.leased:
        log.info(
            "drain: %d leased in %d leases; totals: %d attempted, %d succeeded, %d failed, %d in flight",
            stats.leased,
            stats.leases,
            totals.attempted,
            totals.succeeded,
            totals.failed,
            rt.engine.in_flight,
        )
    return {"leased": stats.leased, "leases": stats.leases}
