"""The RQ jobs. A job is a trigger to lease ready deliveries for a while; the deliveries' own
durable state lives in :mod:`webhooks.queueing.queue`, so a lost or duplicated job loses nothing."""

import logging

from workers import runtime

log = logging.getLogger("webhooks.worker")

DRAIN_BUDGET_S = 30.0


def drain(budget_s: float = DRAIN_BUDGET_S) -> dict[str, int]:
    """Lease and start ready deliveries for up to ``budget_s`` seconds; in-flight ones finish in the
    background on the worker's event loop. Returns counts for this drain."""
    rt = runtime.current()
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
