"""What the engine writes for a leased delivery: an :class:`~webhooks.queueing.queue.Outcome`.

:func:`attempted` turns the answer to an attempt into its outcome (classified and decided by
:mod:`webhooks.outbound.retry`: succeeded, retrying at a due time, or dead); :func:`unsent` is
the outcome of a delivery not sent and not counted as an attempt (due again later, or handed back
to the head of its ready list).
"""

import random

from webhooks.models import DeliveryStatus
from webhooks.outbound import retry
from webhooks.queueing import history
from webhooks.queueing.queue import LeasedDelivery, Outcome
from workers.sender import AttemptResult


def unsent(d: LeasedDelivery, lease_id: str, *, due_ms: int | None = None, back: bool = False) -> Outcome:
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


def attempted(
    d: LeasedDelivery,
    lease_id: str,
    result: AttemptResult,
    schedule: tuple[float, ...],
    now: int,
    rng: random.Random,
    at_ms: int | None = None,
) -> Outcome:
    """The outcome of an attempt answered with ``result`` at ``now`` (stamped ``at_ms`` if given)."""
    classified = retry.classify(result.status_code, result.retry_after, now)
    series = d.series_attempts + 1
    decision = retry.decide(classified, series, schedule, now, rng)
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
