"""The RQ jobs. A job is a trigger to drain ready deliveries for a while; the deliveries' own
durable state lives in :mod:`webhooks.queue`, so a lost or duplicated job loses nothing."""

import logging

from workers import runtime

log = logging.getLogger("webhooks.worker")

DRAIN_BUDGET_S = 30.0


def drain(budget_s: float = DRAIN_BUDGET_S) -> dict[str, int]:
    """Deliver ready work for up to ``budget_s`` seconds (plus in-flight requests), then return counts."""
    rt = runtime.current()
    stats = rt.loop.run_until_complete(rt.engine.drain(budget_s))
    if stats.leased:
        log.info(
            "drained: %d leased, %d attempted, %d succeeded, %d failed, %d deferred",
            stats.leased,
            stats.attempted,
            stats.succeeded,
            stats.failed,
            stats.deferred,
        )
    return {"leased": stats.leased, "attempted": stats.attempted, "succeeded": stats.succeeded}
