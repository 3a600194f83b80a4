import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.outbound.retry import (
    Classified,
    Verdict,
    classify,
    decide,
    max_attempts,
    next_delay_s,
    parse_retry_after,
    parse_schedule,
)

SCHEDULE = (5.0, 300.0, 1800.0)
NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.SUCCESS),
        (204, Verdict.SUCCESS),
        (299, Verdict.SUCCESS),
        (410, Verdict.GONE),
        (301, Verdict.RETRY),
        (302, Verdict.RETRY),
        (400, Verdict.RETRY),
        (404, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (None, Verdict.RETRY),
    ],
)
def test_classification(status: int | None, verdict: Verdict) -> None:
    assert classify(status).verdict is verdict


def test_retry_after_only_counts_for_429_and_503() -> None:
    assert classify(429, "7").retry_after_s == 7
    assert classify(503, "7").retry_after_s == 7
    assert classify(500, "7").retry_after_s is None


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", 1_800_000_000_000) is not None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 0) == 10
    assert parse_retry_after("garbage", NOW_MS) is None


@given(st.integers(min_value=1, max_value=len(SCHEDULE)), st.integers(min_value=0, max_value=2**32))
def test_delay_is_the_schedule_step_within_twenty_percent(attempts: int, seed: int) -> None:
    delay = next_delay_s(SCHEDULE, attempts, random.Random(seed))
    step = SCHEDULE[attempts - 1]
    assert delay is not None and step * 0.8 <= delay <= step * 1.2


def test_schedule_exhaustion_gives_one_plus_len_attempts() -> None:
    rng = random.Random(1)
    assert max_attempts(SCHEDULE) == 4
    assert next_delay_s(SCHEDULE, 3, rng) is not None
    assert next_delay_s(SCHEDULE, 4, rng) is None


def test_retry_after_is_never_undercut_but_capped_at_the_largest_step() -> None:
    rng = random.Random(1)
    assert next_delay_s(SCHEDULE, 1, rng, retry_after_s=60) == 60  # larger than the ~5 s step
    assert next_delay_s(SCHEDULE, 1, rng, retry_after_s=10**6) == 1800  # capped
    delay = next_delay_s(SCHEDULE, 2, rng, retry_after_s=1)
    assert delay is not None and delay >= 240  # the step wins when it is later


def test_decisions() -> None:
    rng = random.Random(3)
    assert decide(Classified(Verdict.SUCCESS), 1, SCHEDULE, NOW_MS, rng).status == "succeeded"
    gone = decide(Classified(Verdict.GONE), 1, SCHEDULE, NOW_MS, rng)
    assert gone.status == "dead" and gone.disable_endpoint
    again = decide(Classified(Verdict.RETRY), 1, SCHEDULE, NOW_MS, rng)
    assert again.status == "retrying" and again.due_ms is not None
    assert NOW_MS + 4000 <= again.due_ms <= NOW_MS + 6000
    assert decide(Classified(Verdict.RETRY), 4, SCHEDULE, NOW_MS, rng).status == "dead"


@pytest.mark.parametrize("text", ["", "a,b", "5,-1", "nan", "inf", ",".join(["1"] * 51)])
def test_bad_schedules_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_schedule(text)


def test_schedule_parses_the_default() -> None:
    assert parse_schedule("5,300,1800,7200,18000,36000,36000") == (5, 300, 1800, 7200, 18000, 36000, 36000)
