"""Standard Webhooks signing (https://www.standardwebhooks.com/), symmetric and asymmetric.

Both schemes sign the content ``"{msg_id}.{timestamp}.{body}"``:

- ``hmac-sha256``: a secret is ``whsec_`` followed by base64 of the raw key bytes, shared with
  the receiver; a signature is ``v1,<base64 HMAC-SHA256>``.
- ``ed25519``: the platform alone holds the private key, ``whsk_`` followed by base64 of its raw
  32-byte seed; the receiver gets the public key, ``whpk_`` followed by base64 of its raw 32
  bytes; a signature is ``v1a,<base64 Ed25519 signature>`` (64 bytes before base64).

Several signatures (one per active key, any mix of schemes, newest key first) are joined with
spaces in one ``webhook-signature`` header. Pure functions, no I/O; a malformed key or scheme
raises :class:`Invalid`.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from webhooks.errors import Invalid

HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
SCHEMES = (HMAC_SHA256, ED25519)
SECRET_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 24
ED25519_KEY_BYTES = 32

# One active key of an endpoint, parsed: an HMAC key or an Ed25519 private key (the type is the scheme).
SigningKey = bytes | Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: what is stored (sealed) and, for ``ed25519``, what is shown."""

    scheme: str
    stored: str  # whsec_... (also shown to the tenant) or whsk_... (never shown)
    public_key: str | None  # whpk_... for ed25519


def check_scheme(value: str) -> str:
    if value not in SCHEMES:
        raise Invalid("signing: 'hmac-sha256' or 'ed25519'")
    return value


def generate_secret() -> str:
    """A fresh random ``whsec_`` secret (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def generate_key(scheme: str) -> NewKey:
    """A new key of ``scheme`` (:class:`Invalid` for an unknown scheme)."""
    if check_scheme(scheme) == HMAC_SHA256:
        return NewKey(HMAC_SHA256, generate_secret(), None)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    return NewKey(ED25519, PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode(), public_key_of(private))


def public_key_of(private: Ed25519PrivateKey) -> str:
    """The ``whpk_`` form of the public half of ``private``."""
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def _b64_after(text: str, prefix: str, what: str) -> bytes:
    if not text.startswith(prefix):
        raise Invalid(f"{what} starts with {prefix!r}")
    try:
        return base64.b64decode(text[len(prefix) :], validate=True)
    except (ValueError, binascii.Error):
        raise Invalid(f"{what} is {prefix!r} followed by base64") from None


def secret_key_bytes(secret: str) -> bytes:
    """The raw HMAC key of a ``whsec_`` secret; raises :class:`Invalid` when it is malformed."""
    key = _b64_after(secret, SECRET_PREFIX, "a signing secret")
    if not 24 <= len(key) <= 64:
        raise Invalid("a signing secret holds 24 to 64 bytes of key")
    return key


def parse_key(stored: str) -> SigningKey:
    """The signing key a stored ``whsec_`` secret or ``whsk_`` private key holds."""
    if stored.startswith(PRIVATE_KEY_PREFIX):
        seed = _b64_after(stored, PRIVATE_KEY_PREFIX, "an Ed25519 private key")
        if len(seed) != ED25519_KEY_BYTES:
            raise Invalid("an Ed25519 private key holds 32 bytes")
        return Ed25519PrivateKey.from_private_bytes(seed)
    return secret_key_bytes(stored)


def _content(msg_id: str, timestamp_s: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp_s}.".encode() + body


def sign(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1,<base64>`` (HMAC-SHA256) signature of ``body`` for this message id and timestamp."""
    digest = hmac.new(key, _content(msg_id, timestamp_s, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_ed25519(key: Ed25519PrivateKey, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1a,<base64>`` (Ed25519) signature of ``body`` for this message id and timestamp."""
    return "v1a," + base64.b64encode(key.sign(_content(msg_id, timestamp_s, body))).decode()


def signature(key: SigningKey, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The signature of ``key``'s scheme."""
    if isinstance(key, Ed25519PrivateKey):
        return sign_ed25519(key, msg_id, timestamp_s, body)
    return sign(key, msg_id, timestamp_s, body)


def signature_header(keys: Iterable[SigningKey], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space separated, newest key first."""
    return " ".join(signature(key, msg_id, timestamp_s, body) for key in keys)


def verify(key: bytes, msg_id: str, timestamp_s: int, body: bytes, header: str) -> bool:
    """True when any ``v1`` signature in ``header`` matches (constant-time comparison)."""
    expected = sign(key, msg_id, timestamp_s, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split(" "))


def verify_ed25519(public_key: str, msg_id: str, timestamp_s: int, body: bytes, header: str) -> bool:
    """True when any ``v1a`` signature in ``header`` verifies with this ``whpk_`` public key."""
    raw = _b64_after(public_key, PUBLIC_KEY_PREFIX, "an Ed25519 public key")
    if len(raw) != ED25519_KEY_BYTES:
        raise Invalid("an Ed25519 public key holds 32 bytes")
    verifier = Ed25519PublicKey.from_public_bytes(raw)
    content = _content(msg_id, timestamp_s, body)
    for candidate in header.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            verifier.verify(base64.b64decode(encoded, validate=True), content)
        except (InvalidSignature, ValueError, binascii.Error):
            continue
        return True
    return False
