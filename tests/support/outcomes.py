"""Outcomes of leased deliveries, as a worker would record them (for the queue's script tests)."""

from typing import Any

from webhooks.queueing import history
from webhooks.queueing.queue import LeasedDelivery, Outcome


def outcome_of(
    lease_id: str,
    d: LeasedDelivery,
    status: str,
    code: int | None,
    *,
    at_ms: int,
    duration_ms: int = 5,
    error: str | None = None,
    excerpt: str | None = None,
    **kw: Any,
) -> Outcome:
    """The outcome of ``d``'s next attempt under lease ``lease_id``: ``status`` after an answer
    ``code`` (None: no answer) at ``at_ms``; ``kw`` sets the other :class:`Outcome` fields."""
    return Outcome(
        d.id,
        lease_id,
        status,
        d.attempt_count + 1,
        d.series_attempts + 1,
        d.tenant_id,
        d.endpoint_id,
        attempt=history.attempt_line(at_ms, code, duration_ms, error, excerpt),
        status_code=code,
        ok=status == "succeeded",
        **kw,
    )
