"""Outcomes of leased deliveries, as a worker would record them (for the queue's script tests)."""

from typing import Any

from webhooks import history
from webhooks.queue import Lease, Outcome


def outcome_of(lease: Lease, i: int, status: str, code: int, *, at_ms: int, **kw: Any) -> Outcome:
    """The next attempt's outcome for the lease's ``i``-th delivery: ``status`` after an answer
    ``code`` at ``at_ms`` (5 ms, no error); ``kw`` sets the other :class:`Outcome` fields."""
    d = lease.deliveries[i]
    return Outcome(
        d.id,
        lease.id,
        status,
        d.attempt_count + 1,
        d.series_attempts + 1,
        d.tenant_id,
        d.endpoint_id,
        attempt=history.attempt_line(at_ms, code, 5, None, None),
        status_code=code,
        ok=status == "succeeded",
        **kw,
    )
