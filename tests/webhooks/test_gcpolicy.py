"""The collector settings the API and worker processes run with."""

import gc
from collections.abc import Iterator

import pytest

from webhooks.runtime import gcpolicy


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_tune_freezes_what_the_process_holds_and_collects_the_young_generation_less_often() -> None:
    _, middle, old = gc.get_threshold()
    gcpolicy.tune()
    assert gc.get_freeze_count() > 1000  # the loaded modules, the app: out of every pass
    assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, middle, old)
    # cycles are still collected
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
