"""Time conversions. Storage keeps Unix milliseconds; the wire shows ISO 8601 UTC."""

import time
from datetime import UTC, datetime
from functools import lru_cache


def now_ms() -> int:
    """The wall clock in Unix milliseconds: what entry points pass down as ``now`` (the domain takes it)."""
    return int(time.time() * 1000)


def iso_from_ms(ms: int | None) -> str | None:
    """``2026-11-29T01:42:18.123Z`` for Unix milliseconds; None stays None."""
    if ms is None:
        return None
    return _iso(ms)


@lru_cache(maxsize=4096)
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_from_datetime(value: datetime) -> int:
    """Unix milliseconds; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
