"""Standard Webhooks signing (https://www.standardwebhooks.com/).

A secret is ``whsec_`` followed by base64 of the raw key bytes. The signed
content is ``"{msg_id}.{timestamp}.{body}"`` and a signature is
``v1,<base64 HMAC-SHA256>``; several signatures (one per active secret) are
joined with spaces in one ``webhook-signature`` header.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from webhooks.errors import Invalid

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def generate_secret() -> str:
    """A fresh random ``whsec_`` secret (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The raw HMAC key of a ``whsec_`` secret; raises :class:`Invalid` when it is malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise Invalid("a signing secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise Invalid("a signing secret is 'whsec_' followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise Invalid("a signing secret holds 24 to 64 bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for this message id and timestamp."""
    to_sign = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: Iterable[bytes], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space separated, newest key first."""
    return " ".join(sign(key, msg_id, timestamp_s, body) for key in keys)


def verify(key: bytes, msg_id: str, timestamp_s: int, body: bytes, header: str) -> bool:
    """True when any ``v1`` signature in ``header`` matches (constant-time comparison)."""
    expected = sign(key, msg_id, timestamp_s, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split(" "))
