"""Ed25519 (``v1a``) signatures: known answers computed outside the platform, and verification by
``cryptography`` directly (never by our own verify function alone)."""

import base64
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from webhooks.errors import Invalid
from webhooks.outbound.signing import (
    ED25519,
    HMAC_SHA256,
    generate_key,
    parse_key,
    public_key_of,
    sign_ed25519,
    signature_header,
    verify_ed25519,
)

# RFC 8032, section 7.1, TEST 1: the secret key (seed) and the public key it yields.
RFC8032_SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
# The Standard Webhooks spec's message, signed with that key by the OpenSSL 3.0 command line
# (`openssl pkeyutl -sign -rawin -inkey rfc8032-test1.pem -in msg | base64`), once, by hand.
KAT_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TS = 1614265330
KAT_BODY = b'{"test": 2432232314}'
KAT_SIGNATURE = "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw=="


def _whsk(seed: bytes) -> str:
    return "whsk_" + base64.b64encode(seed).decode()


def _crypto_verify(public_key: str, msg_id: str, ts: int, body: bytes, signature: str) -> None:
    """Verification by cryptography alone; raises InvalidSignature."""
    assert public_key.startswith("whpk_") and signature.startswith("v1a,")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    key.verify(base64.b64decode(signature.removeprefix("v1a,")), f"{msg_id}.{ts}.".encode() + body)


def test_known_answer_vector_rfc8032_key_openssl_signature() -> None:
    key = parse_key(_whsk(bytes.fromhex(RFC8032_SEED_HEX)))
    assert isinstance(key, Ed25519PrivateKey)
    assert public_key_of(key) == "whpk_" + base64.b64encode(bytes.fromhex(RFC8032_PUBLIC_HEX)).decode()
    assert sign_ed25519(key, KAT_ID, KAT_TS, KAT_BODY) == KAT_SIGNATURE
    assert signature_header([key], KAT_ID, KAT_TS, KAT_BODY) == KAT_SIGNATURE


def test_generated_key_signs_what_cryptography_verifies_and_nothing_else() -> None:
    new = generate_key(ED25519)
    assert new.scheme == ED25519 and new.stored.startswith("whsk_") and new.public_key
    assert len(base64.b64decode(new.public_key.removeprefix("whpk_"))) == 32
    body = b'{"type":"a.b","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'
    sig = signature_header([parse_key(new.stored)], "evt_1", 1700000000, body)
    _crypto_verify(new.public_key, "evt_1", 1700000000, body, sig)
    with pytest.raises(InvalidSignature):
        _crypto_verify(new.public_key, "evt_1", 1700000001, body, sig)
    with pytest.raises(InvalidSignature):
        _crypto_verify(new.public_key, "evt_1", 1700000000, body + b" ", sig)
    assert verify_ed25519(new.public_key, "evt_1", 1700000000, body, sig)
    other = generate_key(ED25519)
    assert other.public_key is not None
    assert not verify_ed25519(other.public_key, "evt_1", 1700000000, body, sig)


def test_mixed_header_verifies_v1_with_standardwebhooks_and_v1a_with_cryptography() -> None:
    ed, hm = generate_key(ED25519), generate_key(HMAC_SHA256)
    assert ed.public_key is not None and hm.public_key is None
    ts = int(time.time())
    body = b'{"type":"a.b","timestamp":"2026-01-01T00:00:00.000Z","data":{"x":1}}'
    header = signature_header([parse_key(ed.stored), parse_key(hm.stored)], "evt_2", ts, body)
    v1a, v1 = header.split(" ")
    assert v1a.startswith("v1a,") and v1.startswith("v1,")
    _crypto_verify(ed.public_key, "evt_2", ts, body, v1a)
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert Webhook(hm.stored).verify(body, headers)["data"] == {"x": 1}


@pytest.mark.parametrize(
    "bad",
    ["whsk_***", _whsk(b"short"), "whsec_" + base64.b64encode(b"x" * 5).decode(), "nope"],
)
def test_malformed_stored_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_key(bad)
    assert bad not in str(err.value) or bad == "nope"


def test_unknown_scheme_is_invalid() -> None:
    with pytest.raises(Invalid, match="signing"):
        generate_key("rsa")
