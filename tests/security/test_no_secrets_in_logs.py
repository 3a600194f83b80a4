"""A full run at DEBUG level: no admin token, API key, signing secret or encryption key in any log."""

import re

import httpx

from tests.conftest import ADMIN_TOKEN, SECRET_KEY, Processes
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port


def test_logs_of_a_full_run_hold_no_secret(procs: Processes, receiver: Receiver) -> None:
    port = free_port()
    debug = {"WEBHOOKS_LOG_LEVEL": "DEBUG", "WEBHOOKS_API_PORT": str(port)}
    procs.start("api", env=debug)
    procs.worker(env=debug)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    poll(lambda: _ready(api), what="the API")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = api.post("/v1/tenants", json={"name": "t"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    second_key = api.post(f"/v1/tenants/{tenant['id']}/api-keys", headers=auth).json()["api_key"]
    ok = api.post(
        "/v1/endpoints",
        json={"url": receiver.url("ok/l"), "headers": {"X-Api-Token": "hdr-secret-1"}},
        headers=auth,
    ).json()
    bad = api.post("/v1/endpoints", json={"url": receiver.url("fail/l")}, headers=auth).json()
    rotated = api.post(f"/v1/endpoints/{ok['id']}/secret/rotate", json={}, headers=auth).json()["secret"]
    api.get("/v1/endpoints", headers={"Authorization": "Bearer whk_wrong-key-attempt"})
    api.get("/v1/endpoints", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
    api.post("/v1/events", json={"event_type": "a.b", "payload": {"p": 1}}, headers=auth)
    poll(lambda: receiver.to("ok/l") and len(receiver.to("fail/l")) >= 2, what="deliveries and failures")
    api.close()
    procs.stop_all()
    logs = procs.logs()
    assert "GET" in logs or "drained" in logs or len(logs) > 200, "the processes did log"
    for secret in (
        ADMIN_TOKEN,
        SECRET_KEY,
        tenant["api_key"],
        second_key,
        ok["secret"],
        bad["secret"],
        rotated,
        "hdr-secret-1",
    ):
        assert secret not in logs, f"a secret leaked into the logs: {secret[:6]}…"
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{20,}", logs)
    assert not re.search(r"whk_[A-Za-z0-9_-]{20,}", logs)


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
