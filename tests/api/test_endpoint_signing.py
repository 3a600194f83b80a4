"""The signing scheme of an endpoint through the API: chosen at creation, changed only by rotation."""

from collections.abc import Callable
from typing import Any

import httpx

from tests.api.helpers import assert_error

URL = "https://hooks.example.com/in"


def test_default_scheme_is_hmac_with_a_secret_and_no_public_key(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL)
    assert ep["signing"] == "hmac-sha256" and ep["secret"].startswith("whsec_") and ep["public_key"] is None
    secret = api.get(f"/v1/endpoints/{ep['id']}/secret", headers=tenant.auth).json()
    assert secret == {"secret": ep["secret"], "signing": "hmac-sha256", "public_key": None}


def test_unknown_scheme_is_refused(api: httpx.Client, tenant: Any) -> None:
    resp = api.post("/v1/endpoints", json={"url": URL, "signing": "rsa"}, headers=tenant.auth)
    assert_error(resp, 422, "signing")


def test_patch_keeps_the_scheme_and_points_at_rotation_to_change_it(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL, signing="ed25519")
    path = f"/v1/endpoints/{ep['id']}"

    same = api.patch(path, json={"signing": "ed25519", "description": "x"}, headers=tenant.auth)
    other = api.patch(path, json={"signing": "hmac-sha256"}, headers=tenant.auth)

    assert same.status_code == 200 and same.json()["description"] == "x", same.text
    assert_error(other, 422, "signing", "rotate")
    after = api.get(path, headers=tenant.auth).json()
    assert after["signing"] == "ed25519" and after["public_key"] == ep["public_key"]
    listed = api.get("/v1/endpoints", headers=tenant.auth).json()["data"]
    assert [(e["signing"], e["public_key"]) for e in listed] == [("ed25519", ep["public_key"])]


def test_rotation_refuses_an_unknown_scheme_and_keeps_the_key(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    ep = make_endpoint(URL, signing="ed25519")
    resp = api.post(f"/v1/endpoints/{ep['id']}/secret/rotate", json={"signing": "none"}, headers=tenant.auth)
    assert_error(resp, 422, "signing")
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).json()["public_key"] == ep["public_key"]
