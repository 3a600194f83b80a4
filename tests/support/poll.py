import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    fn: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.02, what: str = "condition"
) -> T:
    """Call ``fn`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {value!r})")
        time.sleep(interval_s)
