"""Encryption at rest for endpoint signing secrets (AES-256-GCM).

Stored form: ``enc1:<base64 nonce+ciphertext>``. Without a key (development
only; the processes warn at start) secrets are stored as ``plain:<secret>``.
A stored value that was encrypted with another key fails to open with
:class:`ConfigError`, which names no secret.
"""

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhooks.errors import ConfigError

_ENC = "enc1:"
_PLAIN = "plain:"


class SecretBox:
    def __init__(self, key: str | None) -> None:
        """``key``: any string of at least 32 characters (it is hashed to 256 bits), or None."""
        self._aead = AESGCM(hashlib.sha256(key.encode()).digest()) if key else None

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def seal(self, secret: str) -> str:
        if self._aead is None:
            return _PLAIN + secret
        nonce = os.urandom(12)
        return _ENC + base64.b64encode(nonce + self._aead.encrypt(nonce, secret.encode(), None)).decode()

    def open(self, stored: str) -> str:
        if stored.startswith(_PLAIN):
            return stored[len(_PLAIN) :]
        if not stored.startswith(_ENC):
            raise ConfigError("a stored secret has an unknown format")
        if self._aead is None:
            raise ConfigError("endpoint secrets are encrypted but WEBHOOKS_SECRET_KEY is not set")
        raw = base64.b64decode(stored[len(_ENC) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except InvalidTag:
            raise ConfigError(
                "an endpoint secret does not open with WEBHOOKS_SECRET_KEY (wrong key?)"
            ) from None
