"""Identifiers: a type prefix, 10 characters of millisecond time, 16 of randomness.

Ids of one prefix sort by creation time as plain strings (Crockford base32 keeps
the order), which the storage layer relies on for newest-first pagination.
"""

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
