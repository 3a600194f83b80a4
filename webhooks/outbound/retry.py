"""Retry policy and the classification of an attempt's outcome.

Pure functions of their inputs: the caller passes ``now_ms`` and, for jitter,
a ``random`` source, so tests can pin both.

The schedule lists the seconds to wait between attempts after the first, so a
delivery makes at most ``len(schedule) + 1`` attempts.
"""

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from webhooks.models import DeliveryStatus

JITTER = 0.2
DEFAULT_SCHEDULE = "5,300,1800,7200,18000,36000,36000"  # WEBHOOKS_RETRY_SCHEDULE's default


class Verdict(enum.StrEnum):
    SUCCESS = "success"
    GONE = "gone"  # 410: disable the endpoint, the delivery is dead
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Classified:
    verdict: Verdict
    retry_after_s: float | None = None  # what a 429/503 asked for, if anything


def classify(status_code: int | None, retry_after: str | None = None, now_ms: int = 0) -> Classified:
    """What an attempt's outcome means.

    ``status_code`` is None for a timeout, connection or TLS error. Any 2xx is a
    success; 410 is gone; everything else (3xx included: redirects are not
    followed) is retried, and a 429 or 503 carries its ``Retry-After``.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Classified(Verdict.SUCCESS)
    if status_code == 410:
        return Classified(Verdict.GONE)
    if status_code in (429, 503) and retry_after:
        return Classified(Verdict.RETRY, parse_retry_after(retry_after, now_ms))
    return Classified(Verdict.RETRY)


def is_throttle(status_code: int | None, retry_after: str | None = None) -> bool:
    """True for the answers that ask to slow down without saying for how long: 502, 504, and 429
    without ``Retry-After``. The engine lowers the endpoint's requests in flight for them."""
    return status_code in (502, 504) or (status_code == 429 and not retry_after)


def parse_retry_after(value: str, now_ms: int) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date); None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return max(0.0, (when - now).total_seconds())


def max_attempts(schedule: tuple[float, ...]) -> int:
    return len(schedule) + 1


def span_ms(schedule: tuple[float, ...]) -> int:
    """The schedule's span (the sum of its steps, without jitter): the longest a delivery held behind
    an open breaker or a throttle waits from the start of its retry series (``lua/tick.lua``)."""
    return int(sum(schedule) * 1000)


def next_delay_s(
    schedule: tuple[float, ...],
    attempts_made: int,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts failed, or None when exhausted.

    The step ``schedule[attempts_made - 1]`` gets ±20 % jitter. A ``Retry-After``
    is honoured (never sooner than asked) but capped at the largest schedule step.
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    step = schedule[attempts_made - 1]
    delay = step * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max(schedule)))
    return delay


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` to ``(5.0, 300.0, 1800.0)``; raises ValueError with a readable message."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("the retry schedule needs at least one step")
    try:
        steps = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"retry schedule steps are seconds, separated by commas (got {text!r})") from None
    if any(s < 0 or s != s or s == float("inf") for s in steps):
        raise ValueError("retry schedule steps are finite, non-negative seconds")
    if len(steps) > 50:
        raise ValueError("the retry schedule has at most 50 steps")
    return steps


@dataclass(frozen=True, slots=True)
class Decision:
    """What follows an attempt: the new status, when to try again, whether to disable the endpoint."""

    status: DeliveryStatus  # SUCCEEDED, RETRYING or DEAD
    due_ms: int | None = None
    disable_endpoint: bool = False


def decide(
    outcome: Classified,
    series_attempts: int,
    schedule: tuple[float, ...],
    now_ms: int,
    rng: random.Random,
) -> Decision:
    """The decision after the ``series_attempts``-th attempt of the current series ended with ``outcome``."""
    if outcome.verdict is Verdict.SUCCESS:
        return Decision(DeliveryStatus.SUCCEEDED)
    if outcome.verdict is Verdict.GONE:
        return Decision(DeliveryStatus.DEAD, disable_endpoint=True)
    delay_s = next_delay_s(schedule, series_attempts, rng, outcome.retry_after_s)
    if delay_s is None:
        return Decision(DeliveryStatus.DEAD)
    return Decision(DeliveryStatus.RETRYING, due_ms=now_ms + int(delay_s * 1000))
