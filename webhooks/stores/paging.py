"""Pages and cursors: ``{"data": [...], "next_cursor": ...}`` over Redis sorted sets.

A cursor is opaque to callers (URL-safe base64 of a position) and is checked
against the shape it must have, so anything this API did not hand out answers
:class:`~webhooks.errors.Invalid`, never a 500.
"""

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis

from webhooks.errors import Invalid

MAX_PAGE = 1000
DEFAULT_PAGE = 50
SCAN_FACTOR = 20  # a filtered page reads at most this many times `limit` candidates

ID_CURSOR = re.compile(r"[a-z]{2,4}_[0-9a-z]{26}")  # an object id (webhooks.ids)
# "<score> <member>": a position in a scored index (dead ms and delivery id, created ms and event id)
SCORED_CURSOR = re.compile(r"[0-9]{1,16} [A-Za-z0-9_.:-]{1,256}")
# "<created ms> <event id> <delivery id>": a position in the deliveries listed through the events index
DELIVERY_CURSOR = re.compile(r"[0-9]{1,16} [A-Za-z0-9_.:-]{1,256} [a-z]{2,4}_[0-9a-z]{26}")


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: "re.Pattern[str]" = ID_CURSOR) -> str | None:
    """The position a cursor names; :class:`Invalid` for anything this API did not hand out."""
    if not cursor:
        return None
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = ""
    if not shape.fullmatch(value):
        raise Invalid("cursor: not a cursor this API returned (pass back a next_cursor unchanged)")
    return value


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit: between 1 and {MAX_PAGE}")
    return limit


async def lex_page(r: "Redis", index: str, limit: int, after: str | None) -> tuple[list[str], str | None]:
    """Members of a lex-ordered zset, newest (highest) first, after ``after``."""
    high = f"({after}" if after else "+"
    found = cast(list[str], await r.zrevrangebylex(index, high, "-", start=0, num=limit + 1))
    page = found[:limit]
    return page, (encode_cursor(page[-1]) if len(found) > limit else None)


async def scored_scan(
    r: "Redis",
    index: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    after: tuple[int, str] | None = None,
    chunk: int = 500,
) -> AsyncIterator[list[tuple[str, int]]]:
    """``(member, score)`` rows of a zset in (score, member) descending order, in chunks, starting
    right after ``after`` and within ``[since_ms, until_ms]``.

    Many members may share a score (a batch is stored at one instant), so rows at the cursor's
    own score are skipped by position until the scan has passed the cursor.
    """
    high = "+inf" if until_ms is None else str(until_ms)
    low = "-inf" if since_ms is None else str(since_ms)
    if after is not None:
        high = str(after[0]) if until_ms is None else str(min(after[0], until_ms))
    skip = 0
    while True:
        raw = await r.zrevrangebyscore(index, high, low, start=skip, num=chunk, withscores=True)
        if not raw:
            return
        rows = [(str(m), int(sc)) for m, sc in cast("list[tuple[str, float]]", raw)]
        if after is not None:
            a_score, a_member = after
            rows = [(m, sc) for m, sc in rows if sc < a_score or (sc == a_score and m < a_member)]
        if not rows:
            skip += len(raw)  # all at the cursor's score and not past it yet: read on
            continue
        yield rows
        after = (rows[-1][1], rows[-1][0])
        high = str(after[0])
        skip = 0
