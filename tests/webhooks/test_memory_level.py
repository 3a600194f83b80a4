"""The memory budget's levels (pure): ok, trimming, full, and the way back."""

from webhooks.memory import Usage, level

MAX = 1000


def at(share: float) -> Usage:
    return Usage(int(share * MAX), MAX)


def test_no_limit_means_no_budget() -> None:
    assert level(Usage(10**9, 0), "ok", high_share=0.7, history_left=True) == "ok"


def test_above_the_high_watermark_history_is_trimmed_and_ingest_goes_on() -> None:
    assert level(at(0.69), "ok", high_share=0.7, history_left=True) == "ok"
    assert level(at(0.75), "ok", high_share=0.7, history_left=True) == "trimming"
    assert level(at(0.65), "trimming", high_share=0.7, history_left=True) == "trimming"  # down to 60 %
    assert level(at(0.59), "trimming", high_share=0.7, history_left=True) == "ok"


def test_pending_work_alone_above_the_watermark_is_full_until_it_drains() -> None:
    assert level(at(0.75), "trimming", high_share=0.7, history_left=False) == "full"
    assert level(at(0.67), "full", high_share=0.7, history_left=False) == "full"
    assert level(at(0.64), "full", high_share=0.7, history_left=False) == "ok"


def test_ingest_outrunning_the_trimming_waits_at_the_hard_watermark() -> None:
    assert level(at(0.91), "trimming", high_share=0.7, history_left=True) == "full"
    assert level(at(0.87), "full", high_share=0.7, history_left=True) == "full"
    assert level(at(0.84), "full", high_share=0.7, history_left=True) == "trimming"
    assert level(at(1.0), "ok", high_share=0.7, history_left=True) == "full"
