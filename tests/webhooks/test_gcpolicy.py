"""The collector settings the API and worker processes run with."""

import gc
import weakref
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
    # cycles are still collected, by the collector's own young passes (no gc.collect() here)
    assert gc.isenabled()

    class Node:
        other: object = None

    node = Node()
    node.other = node
    dead = weakref.ref(node)
    del node
    assert dead() is not None  # a cycle outlives its last name until a collection
    held: list[list[int]] = []
    for _ in range(gcpolicy.YOUNG_THRESHOLD * (middle + 2)):  # enough for a young and a middle pass
        held.append([])
        if dead() is None:
            break
    assert dead() is None, f"no collection ran in {len(held)} allocations"
