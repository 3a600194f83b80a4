import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from webhooks.errors import Invalid
from webhooks.outbound.signing import generate_secret, secret_key_bytes, sign, signature_header, verify

# The known-answer vector published with the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_known_answer_vector_of_the_spec() -> None:
    assert sign(secret_key_bytes(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_standardwebhooks_package_verifies_our_signature() -> None:
    secret = generate_secret()
    body = b'{"type":"a.b","timestamp":"2026-01-01T00:00:00.000Z","data":{"x":1}}'
    import time

    ts = int(time.time())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([secret_key_bytes(secret)], "evt_1", ts, body),
    }
    assert Webhook(secret).verify(body, headers) == {
        "type": "a.b",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {"x": 1},
    }


def test_several_keys_give_space_separated_signatures_each_verifiable() -> None:
    new, old = secret_key_bytes(generate_secret()), secret_key_bytes(generate_secret())
    header = signature_header([new, old], "m", 1, b"{}")
    assert len(header.split(" ")) == 2
    assert verify(new, "m", 1, b"{}", header) and verify(old, "m", 1, b"{}", header)
    assert not verify(secret_key_bytes(generate_secret()), "m", 1, b"{}", header)


def test_generated_secrets_are_distinct_and_well_formed() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert len(secret_key_bytes(s)) == 24


@pytest.mark.parametrize("bad", ["nope", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()])
def test_malformed_secrets_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        secret_key_bytes(bad)
    assert bad not in str(err.value) or bad == "nope"


@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64),
    ts=st.integers(min_value=0, max_value=2**40),
    body=st.binary(max_size=2048),
)
def test_property_sign_verifies_and_any_change_breaks_it(
    key: bytes, msg_id: str, ts: int, body: bytes
) -> None:
    sig = sign(key, msg_id, ts, body)
    assert verify(key, msg_id, ts, body, sig)
    assert not verify(key, msg_id, ts + 1, body, sig)
    assert not verify(key, msg_id, ts, body + b" ", sig)
    assert not verify(key, msg_id + "x", ts, body, sig)


@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_property_standardwebhooks_accepts_every_body_we_sign(payload: object) -> None:
    import json
    import time

    secret = generate_secret()
    body = json.dumps({"type": "t", "timestamp": "x", "data": payload}).encode()
    ts = int(time.time())
    headers = {
        "webhook-id": "evt_p",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([secret_key_bytes(secret)], "evt_p", ts, body),
    }
    assert Webhook(secret).verify(body, headers)["data"] == payload
