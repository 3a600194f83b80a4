"""Ed25519 (``v1a``) endpoints end to end: API, a real worker process, a real receiver on loopback.

Signatures are checked with ``cryptography``'s ``Ed25519PublicKey`` (v1a) and the
``standardwebhooks`` package (v1), never with the platform's own code.
"""

import base64
from collections.abc import Callable
from typing import Any

import httpx
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from tests.api.helpers import redis_text
from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.receiver import Received, Receiver

Endpoint = Callable[..., dict[str, Any]]


def post_event(api: httpx.Client, tenant: Tenant, payload: Any) -> dict[str, Any]:
    resp = api.post(
        "/v1/events", json={"event_type": "invoice.paid", "payload": payload}, headers=tenant.auth
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def signatures(got: Received) -> dict[str, list[str]]:
    """The header's signatures by version: {"v1a": [...], "v1": [...]}."""
    out: dict[str, list[str]] = {}
    for part in got.headers["webhook-signature"].split(" "):
        version, _, value = part.partition(",")
        out.setdefault(version, []).append(value)
    return out


def verifies_v1a(public_key: str, got: Received, signature_b64: str) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    try:
        key.verify(base64.b64decode(signature_b64), content)
    except Exception:  # noqa: BLE001 - any failure means "does not verify"
        return False
    return True


def test_ed25519_endpoint_delivery_verifies_with_cryptography(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
    rds: "redis.Redis",
) -> None:
    ep = make_endpoint(receiver.url("ok/ed"), signing="ed25519")
    assert ep["signing"] == "ed25519" and ep["secret"] is None
    public_key = ep["public_key"]
    assert public_key.startswith("whpk_") and len(base64.b64decode(public_key[5:])) == 32
    shown = api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()
    assert shown["public_key"] == public_key and shown["signing"] == "ed25519"
    secret = api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth).json()
    assert secret == {"secret": None, "signing": "ed25519", "public_key": public_key}
    assert "whsk_" not in redis_text(rds), "the private key is stored sealed, never in the clear"

    procs.worker()
    ev = post_event(api, tenant, {"amount": 42})
    (got,) = poll(lambda: receiver.to("ok/ed"), what="the delivery")
    sigs = signatures(got)
    assert list(sigs) == ["v1a"] and len(sigs["v1a"]) == 1, got.headers["webhook-signature"]
    assert verifies_v1a(public_key, got, sigs["v1a"][0])
    assert got.headers["webhook-id"] == ev["id"]
    tampered = Received(got.path, got.headers, got.body.replace(b"42", b"43"), got.at)
    assert not verifies_v1a(public_key, tampered, sigs["v1a"][0])


def test_rotations_between_schemes_and_keys_send_every_signature_in_the_grace_period(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Endpoint,
    receiver: Receiver,
    procs: Processes,
) -> None:
    to_ed = make_endpoint(receiver.url("ok/hmac-to-ed"))
    ed_to_ed = make_endpoint(receiver.url("ok/ed-to-ed"), signing="ed25519")
    to_hmac = make_endpoint(receiver.url("ok/ed-to-hmac"), signing="ed25519")

    def rotate(ep: dict[str, Any], **body: Any) -> dict[str, Any]:
        resp = api.post(f"/v1/endpoints/{ep['id']}/secret/rotate", json=body, headers=tenant.auth)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    new_ed = rotate(to_ed, signing="ed25519", grace_period_s=3600)
    assert new_ed["secret"] is None and new_ed["public_key"].startswith("whpk_")
    new_ed2 = rotate(ed_to_ed, grace_period_s=3600)  # same scheme by default
    assert new_ed2["signing"] == "ed25519" and new_ed2["public_key"] != ed_to_ed["public_key"]
    new_hmac = rotate(to_hmac, signing="hmac-sha256", grace_period_s=3600)
    assert new_hmac["secret"].startswith("whsec_") and new_hmac["public_key"] is None
    shown = api.get(f"/v1/endpoints/{to_ed['id']}", headers=tenant.auth).json()
    assert shown["signing"] == "ed25519" and shown["public_key"] == new_ed["public_key"]

    procs.worker()
    post_event(api, tenant, {"n": 1})
    (a,) = poll(lambda: receiver.to("ok/hmac-to-ed"), what="delivery after hmac -> ed25519")
    (b,) = poll(lambda: receiver.to("ok/ed-to-ed"), what="delivery after ed25519 -> ed25519")
    (c,) = poll(lambda: receiver.to("ok/ed-to-hmac"), what="delivery after ed25519 -> hmac")

    # hmac -> ed25519: the new v1a first, the old v1 still there; each verifies with its own key.
    assert a.headers["webhook-signature"].startswith("v1a,")
    assert sorted(signatures(a)) == ["v1", "v1a"]
    assert verifies_v1a(new_ed["public_key"], a, signatures(a)["v1a"][0])
    assert Webhook(to_ed["secret"]).verify(a.body, a.headers)["data"] == {"n": 1}

    # ed25519 -> ed25519: two v1a signatures, one per public key.
    (new_sig, old_sig) = signatures(b)["v1a"]
    assert verifies_v1a(new_ed2["public_key"], b, new_sig) and verifies_v1a(
        ed_to_ed["public_key"], b, old_sig
    )
    assert not verifies_v1a(ed_to_ed["public_key"], b, new_sig)

    # ed25519 -> hmac: the new v1 verifies with standardwebhooks, the old v1a with cryptography.
    assert c.headers["webhook-signature"].startswith("v1,")
    assert Webhook(new_hmac["secret"]).verify(c.body, c.headers)["data"] == {"n": 1}
    assert verifies_v1a(to_hmac["public_key"], c, signatures(c)["v1a"][0])


def test_rotation_without_grace_period_drops_the_old_scheme(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint, receiver: Receiver, procs: Processes
) -> None:
    ep = make_endpoint(receiver.url("ok/now"))
    resp = api.post(
        f"/v1/endpoints/{ep['id']}/secret/rotate",
        json={"signing": "ed25519", "grace_period_s": 0},
        headers=tenant.auth,
    )
    assert resp.status_code == 200, resp.text
    procs.worker()
    post_event(api, tenant, {"n": 2})
    (got,) = poll(lambda: receiver.to("ok/now"), what="the delivery")
    assert list(signatures(got)) == ["v1a"]
    assert verifies_v1a(resp.json()["public_key"], got, signatures(got)["v1a"][0])
