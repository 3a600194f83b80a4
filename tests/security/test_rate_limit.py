"""Per-tenant API rate limit: a token bucket in Redis, 429 with Retry-After, other tenants unaffected."""

from typing import Any

import httpx


def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    make_api: Any, admin: dict[str, str]
) -> None:
    api: httpx.Client = make_api(tenant_rate_per_s=1, tenant_burst=5)
    noisy = api.post("/v1/tenants", json={"name": "noisy"}, headers=admin).json()
    quiet = api.post("/v1/tenants", json={"name": "quiet"}, headers=admin).json()
    noisy_auth = {"Authorization": f"Bearer {noisy['api_key']}"}
    codes = [api.get("/v1/endpoints", headers=noisy_auth).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5, "the burst is allowed"
    assert 429 in codes[5:]
    limited = api.get("/v1/endpoints", headers=noisy_auth)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "limit_exceeded" and "rate limit" in limited.json()["message"]
    quiet_auth = {"Authorization": f"Bearer {quiet['api_key']}"}
    assert api.get("/v1/endpoints", headers=quiet_auth).status_code == 200
    assert api.get("/v1/tenants", headers=admin).status_code == 200, "the admin token is not limited"
