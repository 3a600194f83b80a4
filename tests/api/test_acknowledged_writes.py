"""``WEBHOOKS_ACK_REPLICAS``: a write is answered only once a replica holds it (issue 20).

A real primary with one real replica. With the replica up, a 202 (or 201) means the write is on
the replica at the moment of the answer: the test reads it from the replica itself. With the
replica stopped, the API answers 503 ``replication_timeout`` with ``Retry-After`` after about
``WEBHOOKS_ACK_TIMEOUT_MS``, the write kept on the primary; once the replica is back, the same
event id answers 202 with the event stored the first time.
"""

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ADMIN_TOKEN, ApiServers, api_config
from tests.support.poll import poll
from tests.support.redis_proc import RedisProc
from webhooks import keys
from webhooks.runtime.replication import AckPolicy

TIMEOUT_MS = 500
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Pair:
    def __init__(self, base: Path) -> None:
        self.primary = RedisProc(base / "primary").start()
        self.replica = RedisProc(
            base / "replica", extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        ).start()
        self.p = redis.Redis(port=self.primary.port, decode_responses=True)
        self.r = redis.Redis(port=self.replica.port, decode_responses=True)
        self.wait_replicas(1)

    def wait_replicas(self, n: int) -> None:
        poll(lambda: int(self.p.info("replication")["connected_slaves"]) == n, what=f"{n} replicas")
        if n:
            poll(lambda: self.r.info("replication").get("master_link_status") == "up", what="the link up")

    def stop(self) -> None:
        self.p.close()
        self.r.close()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    both = Pair(tmp_path)
    yield both
    both.stop()


@pytest.fixture
def acked_api(pair: Pair) -> Iterator[Callable[[AckPolicy], httpx.Client]]:
    servers = ApiServers()
    yield lambda ack: servers.start(api_config(pair.primary.url, ack=ack))
    servers.stop_all()


def _tenant(api: httpx.Client) -> tuple[str, dict[str, str]]:
    resp = api.post("/v1/tenants", json={"name": "acked"}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], {"Authorization": f"Bearer {resp.json()['api_key']}"}


def _assert_replication_timeout(resp: httpx.Response, took_s: float) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "replication_timeout"
    assert int(resp.headers["Retry-After"]) >= 1
    assert TIMEOUT_MS / 1000 * 0.9 <= took_s < TIMEOUT_MS / 1000 + 2.0, took_s


def test_answers_once_the_replica_has_the_write_and_503_without_it(
    pair: Pair, acked_api: Callable[[AckPolicy], httpx.Client]
) -> None:
    api = acked_api(AckPolicy(replicas=1, timeout_ms=TIMEOUT_MS))
    tenant_id, auth = _tenant(api)
    # The tenant, its key, an endpoint and an event: each on the replica when the answer comes.
    assert pair.r.hget(keys.tenant(tenant_id), "name") == "acked"
    assert pair.r.hlen(keys.tenant_api_keys(tenant_id)) == 1
    created = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/a"}, headers=auth)
    assert created.status_code == 201, created.text
    assert pair.r.exists(keys.endpoint(tenant_id, created.json()["id"]))
    for i in range(20):  # a few, so that a lucky early replication cannot pass for an acknowledgement
        resp = api.post(
            "/v1/events", json={"id": f"ok-{i}", "event_type": "t.x", "payload": {"i": i}}, headers=auth
        )
        assert resp.status_code == 202, resp.text
        assert pair.r.exists(keys.event(tenant_id, f"ok-{i}")), (
            f"ok-{i} answered 202 before the replica had it"
        )
    batch = api.post(
        "/v1/events/batch",
        json={"events": [{"id": f"b-{i}", "event_type": "t.x", "payload": {}} for i in range(50)]},
        headers=auth,
    )
    assert batch.status_code == 202, batch.text
    assert all(pair.r.exists(keys.event(tenant_id, f"b-{i}")) for i in range(50))

    pair.replica.stop()
    pair.wait_replicas(0)
    started = time.monotonic()
    refused = api.post(
        "/v1/events", json={"id": "alone", "event_type": "t.x", "payload": {"n": 1}}, headers=auth
    )
    _assert_replication_timeout(refused, time.monotonic() - started)
    stored = pair.p.get(keys.event(tenant_id, "alone"))
    assert stored is not None, "the write stays on the primary"

    started = time.monotonic()
    endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/b"}, headers=auth)
    _assert_replication_timeout(endpoint, time.monotonic() - started)

    started = time.monotonic()
    batch = api.post(
        "/v1/events/batch",
        json={"events": [{"id": "alone-b", "event_type": "t.x", "payload": {}}]},
        headers=auth,
    )
    _assert_replication_timeout(batch, time.monotonic() - started)

    pair.replica.start()
    pair.wait_replicas(1)
    again = api.post(
        "/v1/events", json={"id": "alone", "event_type": "t.x", "payload": {"n": 2}}, headers=auth
    )
    assert again.status_code == 202, again.text
    assert again.json()["id"] == "alone"
    assert again.json()["payload"] == {"n": 1}, "the event stored by the refused request, not a new one"
    assert pair.r.get(keys.event(tenant_id, "alone")) == stored
    # The endpoint created during the outage is on the replica now, and listed once.
    listed = api.get("/v1/endpoints", headers=auth).json()["data"]
    assert sorted(e["url"] for e in listed) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]


def test_a_retry_finding_its_event_stored_waits_for_the_replica_to_have_it(
    pair: Pair, acked_api: Callable[[AckPolicy], httpx.Client]
) -> None:
    """A retry that finds its event stored writes no event: it must still not be answered before
    the replica has the stored one. Here another API process stored it while the replica was
    frozen (SIGSTOP: still connected, acknowledging nothing); the retry is answered 503 until the
    replica has it, then 202. (WAIT alone counts its connection's last write, which need not be
    that event's: webhooks/runtime/replication.py writes a fence first.)"""
    first_api = acked_api(AckPolicy(replicas=1, timeout_ms=TIMEOUT_MS))
    second_api = acked_api(AckPolicy(replicas=1, timeout_ms=TIMEOUT_MS))
    tenant_id, auth = _tenant(first_api)
    warm = second_api.post(
        "/v1/events", json={"id": "warm", "event_type": "t.x", "payload": {}}, headers=auth
    )
    assert warm.status_code == 202, warm.text
    assert pair.replica.proc is not None
    pair.replica.proc.send_signal(signal.SIGSTOP)
    try:
        first = first_api.post(
            "/v1/events", json={"id": "dup", "event_type": "t.x", "payload": {}}, headers=auth
        )
        assert first.status_code == 503, first.text
        assert int(pair.p.info("replication")["connected_slaves"]) == 1, "the replica is still connected"
        started = time.monotonic()
        retry = second_api.post(
            "/v1/events", json={"id": "dup", "event_type": "t.x", "payload": {}}, headers=auth
        )
        _assert_replication_timeout(retry, time.monotonic() - started)
    finally:
        pair.replica.proc.send_signal(signal.SIGCONT)
    retry = second_api.post(
        "/v1/events", json={"id": "dup", "event_type": "t.x", "payload": {}}, headers=auth
    )
    assert retry.status_code == 202, retry.text
    assert pair.r.exists(keys.event(tenant_id, "dup"))


def test_without_acknowledgement_a_write_is_answered_with_no_replica(
    pair: Pair, acked_api: Callable[[AckPolicy], httpx.Client]
) -> None:
    api = acked_api(AckPolicy())
    _, auth = _tenant(api)
    pair.replica.stop()
    pair.wait_replicas(0)
    started = time.monotonic()
    resp = api.post("/v1/events", json={"id": "x", "event_type": "t.x", "payload": {}}, headers=auth)
    assert resp.status_code == 202, resp.text
    assert time.monotonic() - started < TIMEOUT_MS / 1000


def test_every_kind_of_api_write_waits_for_the_replica(
    pair: Pair, acked_api: Callable[[AckPolicy], httpx.Client]
) -> None:
    """Tenants, API keys, endpoint update and delete, secret rotation, replays, event types: each
    answers 503 ``replication_timeout`` while no replica acknowledges, and reads answer as ever."""
    api = acked_api(AckPolicy(replicas=1, timeout_ms=TIMEOUT_MS))
    tenant_id, auth = _tenant(api)
    endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/a"}, headers=auth).json()["id"]
    pair.replica.stop()
    pair.wait_replicas(0)
    writes = {
        "tenant": ("POST", "/v1/tenants", {"name": "x"}, ADMIN),
        "api key": ("POST", f"/v1/tenants/{tenant_id}/api-keys", None, ADMIN),
        "endpoint update": ("PATCH", f"/v1/endpoints/{endpoint}", {"description": "d"}, auth),
        "secret rotation": ("POST", f"/v1/endpoints/{endpoint}/secret/rotate", {}, auth),
        "replay": ("POST", "/v1/dead-letters/replay", {}, auth),
        "event type": ("POST", "/v1/event-types", {"name": "t.x"}, auth),
        "endpoint delete": ("DELETE", f"/v1/endpoints/{endpoint}", None, auth),
    }
    for what, (method, path, body, headers) in writes.items():
        started = time.monotonic()
        resp = api.request(method, path, json=body, headers=headers)
        assert resp.status_code == 503, f"{what}: {resp.status_code} {resp.text}"
        _assert_replication_timeout(resp, time.monotonic() - started)
    assert api.get(f"/v1/tenants/{tenant_id}", headers=ADMIN).status_code == 200, "reads do not wait"
