"""What the resource modules share: path building, unset fields, answers without a body."""

import enum
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from hookyard_client.core import query_value

When = datetime | str  # a datetime (naive ones are UTC) or an ISO 8601 string


class Unset(enum.Enum):
    """The type of :data:`UNSET`: a field an update leaves as it is (None sets it to null)."""

    UNSET = "unset"


UNSET = Unset.UNSET


def route_path(template: str, *parts: str) -> str:
    """``template`` with each ``{}`` replaced by a part, percent-encoded (ids may hold ``:``)."""
    return template.format(*(quote(p, safe="") for p in parts))


def nothing(_: Any) -> None:
    """The parse of an answer without a body (204)."""
    return None


def changes(**fields: Any) -> dict[str, Any]:
    """The body of a PATCH: every field given, None included (it sets null), UNSET left out; a
    boolean stays a JSON boolean (``paused`` takes nothing else)."""
    return {k: v if isinstance(v, bool) else query_value(v) for k, v in fields.items() if v is not UNSET}


def new_idempotency_key() -> str:
    """A random ``Idempotency-Key`` (128 bits), as ``events.send`` adds when given none."""
    return "idk_" + secrets.token_hex(16)


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # base32 without i, l, o, u; lower case


def new_event_id(now_ms: int | None = None) -> str:
    """A fresh ``evt_<time><random>`` id of the server's shape (10 Crockford base32 characters of
    Unix milliseconds, so ids sort by creation time, then 64 random bits in hex), which
    ``events.send_batch`` gives each event without one so that retrying the batch is safe."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    stamp = "".join(_CROCKFORD[(ms >> (5 * i)) & 31] for i in reversed(range(10)))
    return f"evt_{stamp}{secrets.randbits(64):016x}"
