"""Identifiers: a type prefix, 10 characters of millisecond time, 16 of randomness.

Ids of one prefix sort by creation time as plain strings (Crockford base32 keeps
the order), which the storage layer relies on for newest-first pagination.
"""

import secrets
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


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A new ``<prefix>_<time><random>`` id; ``now_ms`` defaults to the wall clock."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{prefix}_{_encode(ms, 10)}{_encode(secrets.randbits(80), 16)}"


def floor_id(prefix: str, ms: int) -> str:
    """The smallest id of ``prefix`` created at ``ms``: every id created earlier sorts below it."""
    return f"{prefix}_{_encode(ms, 10)}{'0' * 16}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) == len(prefix) + 27
