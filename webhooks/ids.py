"""Identifiers: a type prefix, 10 characters of millisecond time, 16 of randomness.

Ids of one prefix sort by creation time as plain strings (Crockford base32 keeps
the order), which the storage layer relies on for newest-first pagination.
"""

import hashlib
import os
import random
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

TENANT = "ten"
ENDPOINT = "ep"
EVENT = "evt"
DELIVERY = "dlv"
LEASE = "lse"
REPLAY = "rpl"
API_KEY = "key"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


# Ids need to be unique, not secret (every object is also guarded by its tenant), so a fast
# generator seeded from the OS is enough; it is re-seeded in every forked child.
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


_last_ms = -1
_last_time = ""


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A new ``<prefix>_<time><random>`` id; ``now_ms`` defaults to the wall clock.

    The time part is Crockford base32 (it carries the order); the random part is
    64 bits in hexadecimal, which stays within ``[0-9a-z]``.
    """
    global _last_ms, _last_time
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    if ms != _last_ms:
        _last_ms, _last_time = ms, _encode(ms, 10)
    return f"{prefix}_{_last_time}{_rng.getrandbits(64):016x}"


def fixed_id(prefix: str, ms: int, seed: str) -> str:
    """The id ``seed`` always gets: the shape of :func:`new_id` (``ms`` for the time part), its random
    part taken from SHA-256 of ``seed`` (an operational notification's event id, so that emitting
    it twice stores it once)."""
    return f"{prefix}_{_encode(ms, 10)}{hashlib.sha256(seed.encode()).hexdigest()[:16]}"


def new_stem(n: int, now_ms: int | None = None) -> str:
    """The common start of the ids of ``n`` deliveries of one event (see :func:`stem_member`).

    A stem is a delivery id cut short by the width of the index that completes it (2 base32
    characters for up to 1024 deliveries, 4 beyond), so every member id has the usual shape and
    sorts by creation time, and an event stores one stem instead of ``n`` ids.
    """
    return new_id(DELIVERY, now_ms)[: -_index_width(n)]


_INDEX2 = [_encode(i, 2) for i in range(32**2)]  # the 2-character indexes, made once


def _index_width(n: int) -> int:
    return 2 if n <= 32**2 else 4


def event_id_of_stem(stem: str) -> str:
    """The id a platform-generated event gets: its delivery stem's own characters, so neither the
    event's record nor its deliveries need to store the other id (``webhooks/queueing/history.py``). Only
    for stems of the 2-character index width (events with at most 1024 deliveries)."""
    return EVENT + "_" + stem[len(DELIVERY) + 1 :] + "zz"


def stem_of_event_id(event_id: str) -> str:
    """The delivery stem of an event whose id :func:`event_id_of_stem` made."""
    return DELIVERY + "_" + event_id[len(EVENT) + 1 : len(EVENT) + 25]


def derived(stem: str) -> bool:
    return len(stem) == len(DELIVERY) + 25


def stem_member(stem: str, i: int) -> str:
    """The id of delivery ``i`` of the stem's event."""
    width = len(DELIVERY) + 27 - len(stem)
    if width == 2 and i < len(_INDEX2):
        return stem + _INDEX2[i]
    return stem + _encode(i, width)


def stem_members(stem: str, n: int) -> list[str]:
    if len(stem) == len(DELIVERY) + 25 and n <= len(_INDEX2):  # the common, 2-character index
        return [stem + suffix for suffix in _INDEX2[:n]]
    return [stem_member(stem, i) for i in range(n)]


def ms_of(value: str) -> int:
    """The creation time (Unix ms) encoded in an id made by :func:`new_id`."""
    t = value.partition("_")[2][:10]
    ms = 0
    for ch in t:
        ms = ms * 32 + _ALPHABET.index(ch)
    return ms


def floor_id(prefix: str, ms: int) -> str:
    """The smallest id of ``prefix`` created at ``ms``: every id created earlier sorts below it."""
    return f"{prefix}_{_encode(ms, 10)}{'0' * 16}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) == len(prefix) + 27


def time_of(value: str) -> int | None:
    """The creation time (unix ms) encoded in an id made by :func:`new_id`; None if it is not one."""
    _, sep, rest = value.partition("_")
    if not sep or len(rest) != 26:
        return None
    ms = 0
    for char in rest[:10]:
        digit = _ALPHABET.find(char)
        if digit < 0:
            return None
        ms = ms * 32 + digit
    return ms
